"""Counting check-ins: a machine fetching metadata with its credential.

Metadata is public and signed, so a credential on a metadata request only
says who is asking: it is verified, counted, and the machine's
``last_seen`` moves on (at most once per ``LAST_SEEN_GRANULARITY``).

A fleet checks in all the time, so this must not cost a transaction per
request. Credentials to verify are looked up in batches (one ``IN (…)``
query for everything queued meanwhile) by one thread; a verified credential
is remembered for a few minutes, so a machine's later check-ins cost a
SHA-256 and a dictionary lookup; ``last_seen`` writes go to the batching
telemetry writer. A credential that was never valid is always looked up;
one revoked or replaced in another process may still be counted (it is
never served anything more) until its entry ages out.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from livepatch.server import secrets
from livepatch.server.batching import Batcher
from livepatch.server.errors import TokenRevoked, Unauthenticated
from livepatch.server.machines import EXPIRED, LAST_SEEN_GRANULARITY
from livepatch.server.metrics import Metrics
from livepatch.server.storage.models import Machine, Token
from livepatch.server.telemetry import TelemetryWriter

REMEMBER = timedelta(minutes=5)
MAX_REMEMBERED = 100_000

_LOOKUP = (
    select(
        Machine.credential_digest,
        Machine.id,
        Machine.credential_expires,
        Machine.last_seen,
        Token.revoked,
    )
    .join(Token, Token.id == Machine.token_id)
    .where(Machine.credential_digest.in_(bindparam("digests", expanding=True)))
)


@dataclass(slots=True)
class Seen:
    machine: int
    """The machine's row id."""
    valid_until: datetime
    """The credential's expiry or when to look it up again, whichever is sooner."""
    next_write: datetime
    """When ``last_seen`` is next worth writing."""


@dataclass(frozen=True)
class Lookup:
    digest: str
    now: datetime
    result: Future[None]


class CheckIns:
    def __init__(
        self,
        reading: Callable[[], AbstractContextManager[Session]],
        writer: TelemetryWriter,
        metrics: Metrics,
        clock: Callable[[], datetime],
    ) -> None:
        self.reading = reading
        self.writer = writer
        self.metrics = metrics
        self.clock = clock
        self._seen: dict[str, Seen] = {}
        self._lookups: Batcher[Lookup] = Batcher("livepatch-checkins", self._look_up)

    def remembered(self, credential: str) -> bool:
        """Count the check-in if the credential was verified recently; False if not known."""
        digest = secrets.digest(credential)
        seen = self._seen.get(digest)
        if seen is None:
            return False
        now = self.clock()
        if now >= seen.valid_until:
            self._seen.pop(digest, None)
            return False
        self._counted(seen, now)
        return True

    async def check_in(self, credential: str) -> None:
        """Verify the credential and count the check-in; raises Unauthenticated."""
        if self.remembered(credential):
            return
        digest = secrets.digest(credential)
        lookup = Lookup(digest, self.clock(), Future())
        self._lookups.put(lookup)
        await asyncio.wrap_future(lookup.result)
        seen = self._seen.get(digest)
        if seen is not None:
            self._counted(seen, lookup.now)

    def forget(self, credential: str) -> None:
        """Stop remembering a credential (renewed or de-enrolled in this process)."""
        self._seen.pop(secrets.digest(credential), None)

    def close(self) -> None:
        self._lookups.close()

    def _counted(self, seen: Seen, now: datetime) -> None:
        if now >= seen.next_write:
            seen.next_write = now + LAST_SEEN_GRANULARITY
            self.writer.check_in(seen.machine, now, now - LAST_SEEN_GRANULARITY)
        self.metrics.inc("livepatch_checkins_total")

    def _look_up(self, batch: list[Lookup]) -> None:
        batch = [lookup for lookup in batch if lookup.result.set_running_or_notify_cancel()]
        if not batch:
            return
        try:
            with self.reading() as session:
                rows = session.execute(_LOOKUP, {"digests": sorted({x.digest for x in batch})})
                found: dict[str, tuple[str, int, datetime, datetime, datetime | None]] = {
                    row[0]: (row[0], row[1], row[2], row[3], row[4]) for row in rows
                }
        except Exception as error:
            for lookup in batch:
                lookup.result.set_exception(error)
            return
        if len(self._seen) + len(found) > MAX_REMEMBERED:
            self._seen.clear()
        for lookup in batch:
            row = found.get(lookup.digest)
            if row is None or not hmac.compare_digest(row[0], lookup.digest):
                lookup.result.set_exception(Unauthenticated())
                continue
            _, machine, expires, last_seen, revoked = row
            if expires <= lookup.now:
                lookup.result.set_exception(Unauthenticated(EXPIRED))
                continue
            if revoked is not None:
                lookup.result.set_exception(TokenRevoked())
                continue
            valid_until = min(expires, lookup.now + REMEMBER)
            next_write = last_seen + LAST_SEEN_GRANULARITY
            self._seen.setdefault(lookup.digest, Seen(machine, valid_until, next_write))
            lookup.result.set_result(None)
