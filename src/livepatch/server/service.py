"""The running service's parts, wired once and shared by the API and the admin.

`Service` owns the database, the blob store and its cached view, the
metrics and the clock; the metadata publisher (TUF signing) is opened on
first use because reading keys is only needed when something is published
or a machine enrols.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from livepatch.server import reports
from livepatch.server.blobs import BlobStore, DirectoryBlobStore, open_store
from livepatch.server.buckets import TokenBudget
from livepatch.server.checkins import CheckIns
from livepatch.server.config import ServerConfig
from livepatch.server.errors import Conflict, ServerError
from livepatch.server.metrics import Metrics
from livepatch.server.publishing import Publisher
from livepatch.server.static import StaticFiles
from livepatch.server.storage.database import Database
from livepatch.server.telemetry import TelemetryWriter

Clock = Callable[[], datetime]
REMOTE_REVALIDATE = 1.0


def utcnow() -> datetime:
    return datetime.now(UTC)


class Busy(ServerError):
    status = 503
    code = "busy"

    def __init__(self) -> None:
        super().__init__("The service is busy or its database is unavailable: try again shortly.")


class Service:
    def __init__(
        self,
        config: ServerConfig,
        *,
        clock: Clock = utcnow,
        store: BlobStore | None = None,
        database: Database | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.database = database or Database(config.database_url)
        self.store: BlobStore = store or open_store(config.blobs_url, config.blob_dir)
        local = isinstance(self.store, DirectoryBlobStore)
        # A remote store is asked whether a file changed at most once a second.
        self.static = StaticFiles(self.store, revalidate=0.0 if local else REMOTE_REVALIDATE)
        self.metrics = Metrics()
        limits = config.limits
        budget = TokenBudget(limits.report_per_token_slot, limits.report_per_token_max)
        self.telemetry = TelemetryWriter(self.database, self._record_report, _storage_error, budget)
        self.checkins = CheckIns(
            lambda: self.transaction(readonly=True), self.telemetry, self.metrics, clock
        )

    @cached_property
    def publisher(self) -> Publisher:
        return Publisher.open(self.config, self.store, self.clock)

    def root(self) -> dict[str, Any]:
        """The current TUF root metadata, which a machine pins at enrolment."""
        document: dict[str, Any] = json.loads(self.publisher.root_json())
        return document

    @contextmanager
    def transaction(self, *, readonly: bool = False, durable: bool = True) -> Iterator[Session]:
        """A database transaction whose storage failures become API errors."""
        try:
            with self.database.transaction(readonly=readonly, durable=durable) as session:
                yield session
        except (IntegrityError, OperationalError) as error:
            raise _storage_error(error) from error

    def _record_report(
        self, machine_id: str, credential: str, outcome: reports.Outcome, now: datetime
    ) -> str:
        """One report in its own transaction: the telemetry writer's slow path."""
        with self.transaction(durable=False) as session:
            return reports.accept(session, machine_id, credential, outcome, now=now)

    def close(self) -> None:
        self.checkins.close()
        self.telemetry.close()
        self.database.dispose()
        self.metrics.close()


def _storage_error(error: BaseException) -> BaseException:
    """The API error for a storage failure (others are returned unchanged)."""
    if isinstance(error, IntegrityError):
        conflict = Conflict("Another request changed the same record at the same time: try again.")
        conflict.__cause__ = error
        return conflict
    if isinstance(error, OperationalError):
        busy = Busy()
        busy.__cause__ = error
        return busy
    return error
