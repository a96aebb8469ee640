"""Writing what machines tell the service (reports, check-ins) in batches.

Reports and check-ins are small writes from many machines at once. Each in
its own transaction, they queue on the database's write lock (SQLite has one
writer at a time; PostgreSQL commits one by one) and a burst turns into a
convoy of waiting requests. Here one thread per process takes everything
queued, writes it in one transaction with prepared statements, and then
answers every waiting request: a burst costs one commit.

A report is one statement: the credential check, the patch's current stage
and the upsert happen together (``INSERT … SELECT … ON CONFLICT``). When it
inserts nothing, the report is re-run the slow way, which says why (an
unknown credential, another machine's, an unknown patch). Requests wait for
their report's commit, so a 202 means the report is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, bindparam, cast, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.sql.dml import Insert, Update

from livepatch.server import secrets
from livepatch.server.batching import Batcher
from livepatch.server.errors import ServerError
from livepatch.server.reports import Outcome
from livepatch.server.storage.database import Database
from livepatch.server.storage.models import Machine, Patch, Report, UTCDateTime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PendingReport:
    machine_id: str
    credential: str
    outcome: Outcome
    now: datetime
    result: Future[str]


@dataclass(frozen=True)
class PendingCheckIn:
    """Its fields are the parameters of CHECK_IN."""

    machine: int
    """The machine's row id."""
    now: datetime
    cutoff: datetime
    """Only write if the stored last_seen is older than this."""


Fallback = Callable[[str, str, Outcome, datetime], str]
"""Record one report the slow way, raising the error that explains a refusal."""

Failure = Callable[[BaseException], BaseException]
"""Turn a storage failure into the error to give the waiting request."""


def report_statement(dialect: str) -> Insert:
    """Insert or update the report, if the credential is the machine's and the patch exists."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    source = (
        select(
            Machine.machine_id,
            Patch.patch_id,
            Patch.stage,
            cast(bindparam("kernel", type_=String), String),
            cast(bindparam("result", type_=String), String),
            cast(bindparam("errno", type_=Integer), Integer),
            cast(bindparam("reason", type_=String), String),
            cast(bindparam("duration_ms", type_=Integer), Integer),
            cast(bindparam("taint", type_=Integer), Integer),
            bindparam("received", type_=UTCDateTime),
            cast(bindparam("health", type_=String), String),
            cast(bindparam("evidence", type_=String), String),
        )
        .select_from(Machine)
        .join(Patch, true())
        .where(
            Machine.machine_id == bindparam("machine_id"),
            Machine.credential_digest == bindparam("digest"),
            Machine.credential_expires > bindparam("now", type_=UTCDateTime),
            Patch.patch_id == bindparam("patch_id"),
        )
    )
    columns = [
        "machine_id",
        "patch_id",
        "stage",
        "kernel",
        "result",
        "errno",
        "reason",
        "duration_ms",
        "taint",
        "received",
        "health",
        "evidence",
    ]
    statement = insert(Report).from_select(columns, source)
    changed = {name: statement.excluded[name] for name in columns[3:]}
    return statement.on_conflict_do_update(
        index_elements=["machine_id", "patch_id", "stage"], set_=changed
    ).returning(Report.stage)


CHECK_IN: Update = (
    update(Machine)
    .where(Machine.id == bindparam("machine"), Machine.last_seen < bindparam("cutoff"))
    .values(last_seen=bindparam("now"))
)


class TelemetryWriter:
    """Reports and check-ins of this process, written by one thread in batches."""

    def __init__(self, database: Database, fallback: Fallback, failure: Failure) -> None:
        self.database = database
        self.fallback = fallback
        self.failure = failure
        self._statement = report_statement(database.dialect)
        self._batcher: Batcher[PendingReport | PendingCheckIn] = Batcher(
            "livepatch-telemetry", self._write
        )

    def report(
        self, machine_id: str, credential: str, outcome: Outcome, now: datetime
    ) -> Future[str]:
        """Queue a report; the future gives the stage it was counted in, or the refusal."""
        result: Future[str] = Future()
        self._batcher.put(PendingReport(machine_id, credential, outcome, now, result))
        return result

    def check_in(self, machine: int, now: datetime, cutoff: datetime) -> None:
        """Queue a ``last_seen`` update (nobody waits for it)."""
        self._batcher.put(PendingCheckIn(machine, now, cutoff))

    def close(self) -> None:
        self._batcher.close()

    def _write(self, batch: list[PendingReport | PendingCheckIn]) -> None:
        # A report whose request was cancelled (the client went away) is dropped;
        # the others can no longer be cancelled.
        reports = [
            item
            for item in batch
            if isinstance(item, PendingReport) and item.result.set_running_or_notify_cancel()
        ]
        check_ins = [item for item in batch if isinstance(item, PendingCheckIn)]
        try:
            self._write_batch(reports, check_ins)
        except Exception as error:
            for item in reports:
                if not item.result.done():
                    item.result.set_exception(self.failure(error))
            raise

    def _write_batch(self, reports: list[PendingReport], check_ins: list[PendingCheckIn]) -> None:
        stages: list[str | None] = []
        try:
            with self.database.connection(durable=False) as connection:
                for item in reports:
                    row = connection.execute(self._statement, _parameters(item)).first()
                    stages.append(None if row is None else str(row[0]))
                if check_ins:
                    connection.execute(CHECK_IN, [vars(c) for c in check_ins])
        except SQLAlchemyError as error:
            if not isinstance(error, OperationalError):
                log.exception("a batch of %d reports failed; retrying one by one", len(reports))
            for item in reports:
                self._one_by_one(item)
            return
        for item, stage in zip(reports, stages, strict=True):
            if stage is None:
                self._one_by_one(item)
            else:
                item.result.set_result(stage)

    def _one_by_one(self, item: PendingReport) -> None:
        try:
            stage = self.fallback(item.machine_id, item.credential, item.outcome, item.now)
        except ServerError as error:
            item.result.set_exception(error)
        except BaseException as error:
            item.result.set_exception(self.failure(error))
        else:
            item.result.set_result(stage)


def _parameters(item: PendingReport) -> dict[str, Any]:
    outcome = item.outcome
    return {
        "machine_id": item.machine_id,
        "digest": secrets.digest(item.credential),
        "now": item.now,
        "patch_id": outcome.patch_id,
        "kernel": outcome.kernel,
        "result": outcome.result.value,
        "errno": outcome.errno,
        "reason": outcome.reason,
        "duration_ms": outcome.duration_ms,
        "taint": outcome.taint,
        "received": item.now,
        "health": None if outcome.health is None else outcome.health.value,
        "evidence": outcome.evidence,
    }
