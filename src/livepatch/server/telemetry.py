"""Writing what machines tell the service (reports, check-ins) in batches.

Reports and check-ins are small writes from many machines at once. Each in
its own transaction, they queue on the database's write lock (SQLite has one
writer at a time; PostgreSQL commits one by one) and a burst turns into a
convoy of waiting requests. Here one thread per process takes everything
queued, writes it in one transaction with prepared statements, and then
answers every waiting request: a burst costs one commit.

A batch's reports are checked and stored by ``reports.accept_many`` (who
sent them, in one query; whether each counts; then one upsert statement for
all that count) inside the batch's transaction; a refusal is the error of that
one request and writes nothing. When the batch fails in the
database, each report is re-run in its own transaction. Requests wait for
their report's commit, so a 202 means the report is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, update
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.sql.dml import Update

from livepatch.server.batching import Batcher
from livepatch.server.buckets import TokenBudget
from livepatch.server.errors import ServerError
from livepatch.server.reports import Claim, Outcome, accept_many
from livepatch.server.storage.database import Database
from livepatch.server.storage.models import Machine

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
"""Record one report in its own transaction, raising the error that explains a refusal."""

Failure = Callable[[BaseException], BaseException]
"""Turn a storage failure into the error to give the waiting request."""


CHECK_IN: Update = (
    update(Machine)
    .where(Machine.id == bindparam("machine"), Machine.last_seen < bindparam("cutoff"))
    .values(last_seen=bindparam("now"))
)


class TelemetryWriter:
    """Reports and check-ins of this process, written by one thread in batches."""

    def __init__(
        self,
        database: Database,
        fallback: Fallback,
        failure: Failure,
        budget: TokenBudget | None = None,
    ) -> None:
        """`budget`: the reports budget of each token (checked in the batch; the
        one-by-one fallback re-runs reports the batch charged already)."""
        self.database = database
        self.fallback = fallback
        self.failure = failure
        self.budget = budget
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
        outcomes: list[str | ServerError] = []
        try:
            with self.database.connection(durable=False) as connection:
                if reports:
                    claims = [
                        Claim(item.machine_id, item.credential, item.outcome, item.now)
                        for item in reports
                    ]
                    outcomes = accept_many(connection, claims, {}, self.budget)
                if check_ins:
                    connection.execute(CHECK_IN, [vars(c) for c in check_ins])
        except SQLAlchemyError as error:
            if not isinstance(error, OperationalError):
                log.exception("a batch of %d reports failed; retrying one by one", len(reports))
            for item in reports:
                self._one_by_one(item)
            return
        for item, outcome in zip(reports, outcomes, strict=True):
            if isinstance(outcome, ServerError):
                item.result.set_exception(outcome)
            else:
                item.result.set_result(outcome)

    def _one_by_one(self, item: PendingReport) -> None:
        try:
            stage = self.fallback(item.machine_id, item.credential, item.outcome, item.now)
        except ServerError as error:
            item.result.set_exception(error)
        except BaseException as error:
            item.result.set_exception(self.failure(error))
        else:
            item.result.set_result(stage)
