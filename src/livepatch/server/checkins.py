"""Counting check-ins: a machine fetching metadata with its credential.

Metadata is public and signed, so a credential on a metadata request only
says who is asking: it is verified, counted, and the machine's
``last_seen`` moves on (at most once per ``LAST_SEEN_GRANULARITY``).

A fleet checks in all the time, so this must not cost a transaction per
request. Each worker keeps an index of every machine's credential (digest,
row id, expiry; machines of a revoked token are left out, so that their
check-ins are looked up and refused), loaded by one thread when the first check-in arrives and
reloaded every ``RELOAD``: a machine's check-in then costs a SHA-256 and a
dictionary lookup on the event loop, although at a 60-minute interval a
worker never sees the same machine twice in a few minutes (profiled in
bench/RESULTS.md, "check-in profile"). A credential the index does not hold
(a machine enrolled since) is looked up in batches (one ``IN (…)`` query for
everything queued meanwhile) by the same thread, and remembered.
``last_seen`` writes go to the batching telemetry writer. A credential that
was never valid is always looked up; one revoked or replaced (in another
process, or in this one while a reload was reading) may still be counted (it
is never served anything more) until its entry ages out, at most
``REMEMBER`` after it was read. Machines of a revoked token are left out of
the index, so their check-ins are looked up and refused (``TokenRevoked``)
from the next reload on.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from livepatch.server import secrets
from livepatch.server.batching import Batcher
from livepatch.server.errors import TokenRevoked, Unauthenticated
from livepatch.server.machines import EXPIRED, LAST_SEEN_GRANULARITY
from livepatch.server.metrics import Metrics
from livepatch.server.storage.models import Machine, Token
from livepatch.server.telemetry import TelemetryWriter

log = logging.getLogger(__name__)

REMEMBER = timedelta(minutes=5)
RELOAD = timedelta(minutes=4)
"""How often the index is reloaded: less than REMEMBER, so that it never ages out."""
RELOAD_RETRY = timedelta(seconds=30)
MAX_REMEMBERED = 1_000_000
"""Above this many machines no index is kept (every new check-in is looked up)."""
RELOAD_CHUNK = 5_000
"""Rows read per query while reloading; the thread yields between them, so the event
loop goes on answering (one read of 100,000 rows would hold the GIL for most of a second)."""

_ALL = select(
    Machine.credential_digest,
    Machine.id,
    Machine.credential_expires,
    Machine.last_seen,
    Token.revoked,
).join(Token, Token.id == Machine.token_id)
_LOOKUP = _ALL.where(Machine.credential_digest.in_(bindparam("digests", expanding=True)))
_COUNT = select(func.count()).select_from(Machine)
_CHUNK = _ALL.where(Machine.id > bindparam("after")).order_by(Machine.id).limit(RELOAD_CHUNK)


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


@dataclass(frozen=True)
class Reload:
    """Read every machine's credential into the index (queued when it is due)."""

    now: datetime


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
        self._reload_due: datetime | None = None
        self._lookups: Batcher[Lookup | Reload] = Batcher("livepatch-checkins", self._look_up)

    def start(self) -> None:
        """Load the index now (at start-up), not at the first check-in."""
        now = self.clock()
        self._reload_due = now + RELOAD
        self._lookups.put(Reload(now))

    def remembered(self, credential: str) -> bool:
        """Count the check-in if the credential was verified recently; False if not known."""
        now = self.clock()
        if self._reload_due is None or now >= self._reload_due:
            self._reload_due = now + RELOAD  # set first: one reload queued at a time
            self._lookups.put(Reload(now))
        digest = secrets.digest(credential)
        seen = self._seen.get(digest)
        if seen is None:
            return False
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

    def _look_up(self, items: list[Lookup | Reload]) -> None:
        reloads = [item.now for item in items if isinstance(item, Reload)]
        if reloads:
            self._reload(max(reloads))
        batch = [
            item
            for item in items
            if isinstance(item, Lookup) and item.result.set_running_or_notify_cancel()
        ]
        if not batch:
            return
        try:
            with self.reading() as session:
                rows = session.connection().execute(
                    _LOOKUP, {"digests": sorted({x.digest for x in batch})}
                )
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

    def _reload(self, now: datetime) -> None:
        """Replace the index with every machine's credential as stored now."""
        previous = self._seen
        valid_until = now + REMEMBER
        index: dict[str, Seen] = {}
        try:
            with self.reading() as session:
                count = session.scalar(_COUNT) or 0
            if count > MAX_REMEMBERED:
                log.info("%d machines: check-ins are verified without an index", count)
                return
            after = 0
            while True:
                with self.reading() as session:
                    rows = session.connection().execute(_CHUNK, {"after": after}).all()
                for digest, machine, expires, last_seen, revoked in rows:
                    if expires <= now or revoked is not None:
                        continue  # looked up when it checks in: refused
                    next_write = last_seen + LAST_SEEN_GRANULARITY
                    known = previous.get(digest)
                    if known is not None and known.machine == machine:
                        next_write = max(next_write, known.next_write)
                    index[digest] = Seen(machine, min(expires, valid_until), next_write)
                if len(rows) < RELOAD_CHUNK:
                    break
                after = rows[-1][1]
                time.sleep(0.001)
        except Exception:
            log.exception("loading the credential index failed; check-ins are looked up")
            self._reload_due = now + RELOAD_RETRY
            return
        self._seen = index
