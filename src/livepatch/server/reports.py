"""Apply outcomes reported by machines: which ones count, and their aggregates.

A report is a claim by an enrolled machine, and some enrolled machines are
hostile. One counts only when (``refusal``):

- the credential is the machine's, unexpired, of a token not revoked, and
  the machine is not a ``duplicate`` (an id enrolled again without proof);
- the patch is published for the kernel reported, and that is the kernel the
  machine enrolled with;
- the rollout admits the machine for the patch in its stage (bucket and tier;
  a halt does not matter: machines that loaded it before may still report).

Each machine keeps one outcome per patch and stage (a later report updates
it). Each row remembers the token the machine held, and the engine counts at
most ``machine_limit`` rows per token and stage (the earliest), so a token
cycling enrol → report → de-enrol adds no more votes than it has slots, and
de-enrolment keeps the rows for the audit trail. Reports of revoked tokens
stop counting.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Row, String, and_, any_, bindparam, case, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from livepatch.rollout import RolloutState, Stage, Tier, admits
from livepatch.server import secrets
from livepatch.server.buckets import TokenBudget
from livepatch.server.engine import Outcomes
from livepatch.server.errors import (
    Forbidden,
    NotFound,
    RateLimited,
    ServerError,
    TokenRevoked,
    Unauthenticated,
)
from livepatch.server.machines import EXPIRED
from livepatch.server.storage.models import Machine, Patch, Report, Token

Executor = Session | Connection


class Result(StrEnum):
    APPLIED = "applied"
    FAILED = "failed"
    CRASHED = "crashed"
    """An apply intent from an earlier boot was found: the machine went down with it young."""
    REVERTED = "reverted"
    """The machine left the patch because it was revoked."""


class Health(StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True)
class Outcome:
    """One report as a machine sends it."""

    patch_id: str
    kernel: str
    result: Result
    errno: int | None
    reason: str | None
    duration_ms: int
    taint: int
    health: Health | None = None
    """None: not judged yet (the health window has not ended)."""
    evidence: str | None = None
    """Kernel-log excerpt and taint letters behind the verdict or the failure."""


@dataclass(frozen=True)
class Aggregate:
    stage: str
    kernel: str
    applied: int
    failed: int


@dataclass(frozen=True)
class Reporter:
    """What the service knows of the machine that sent a report."""

    machine_id: str
    tier: Tier
    kernel: str
    token_id: int | None
    """None only for reports recorded without enrolment (simulations): uncapped."""
    duplicate: bool
    machine_limit: int | None = None
    """The token's machine limit (its reports budget scales with it)."""


@dataclass(frozen=True)
class PatchFacts:
    patch_id: str
    kernels: Sequence[str]
    state: RolloutState


class ReportRefused(Forbidden):
    """An authenticated report that must not count (see the module docstring)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def refusal(reporter: Reporter, patch: PatchFacts, outcome: Outcome) -> ReportRefused | None:
    """Why this report must not count, or None when it counts."""
    if reporter.duplicate:
        return ReportRefused(
            "duplicate-machine",
            f"Machine id {reporter.machine_id} was already enrolled by another machine: "
            "give this machine its own /etc/machine-id and enrol it again.",
        )
    if outcome.kernel not in patch.kernels:
        return ReportRefused(
            "wrong-kernel",
            f"Patch {patch.patch_id} is not published for kernel {outcome.kernel}.",
        )
    if outcome.kernel != reporter.kernel:
        return ReportRefused(
            "wrong-kernel",
            f"The machine enrolled with kernel {reporter.kernel}, not {outcome.kernel}: "
            "enrol it again after booting a new kernel.",
        )
    unhalted = RolloutState(patch.state.stage, patch.state.percentage, halted=False)
    if not admits(unhalted, reporter.machine_id, patch.patch_id, reporter.tier):
        return ReportRefused(
            "not-admitted",
            f"The rollout of {patch.patch_id} in stage {patch.state.stage.value} does not "
            "include this machine, so its report is not counted.",
        )
    return None


# Built once: reports are the hot write path, and building a statement costs
# more than running it.
_REPORTER_COLUMNS = select(
    Machine.machine_id,
    Machine.credential_digest,
    Machine.credential_expires,
    Machine.tier,
    Machine.kernel,
    Machine.token_id,
    Machine.duplicate,
    Token.revoked,
    Token.machine_limit,
).join(Token, Token.id == Machine.token_id)
_REPORTER = _REPORTER_COLUMNS.where(Machine.credential_digest == bindparam("digest"))
_REPORTERS = _REPORTER_COLUMNS.where(
    Machine.credential_digest.in_(bindparam("digests", expanding=True))
)
_REPORTERS_ARRAY = _REPORTER_COLUMNS.where(
    Machine.credential_digest == any_(bindparam("digests", type_=postgresql.ARRAY(String)))
)
"""PostgreSQL's form: one statement text whatever the batch size, so its plan is prepared once
per connection (an ``IN (…)`` list's text changes with the number of digests)."""
_PATCH = select(Patch.kernels, Patch.stage, Patch.percentage).where(
    Patch.patch_id == bindparam("patch_id")
)
_COLUMNS = (
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
    "token_id",
)


@functools.cache
def _upsert(dialect: str) -> Insert:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(Report).values({name: bindparam(name) for name in _COLUMNS})
    # The token of the first report stays: a machine moving to another token
    # must not free a vote slot of the first one.
    kept = ("machine_id", "patch_id", "stage", "token_id")
    return statement.on_conflict_do_update(
        index_elements=["machine_id", "patch_id", "stage"],
        set_={name: statement.excluded[name] for name in _COLUMNS if name not in kept},
    )


def reporter(executor: Executor, machine_id: str, credential: str, *, now: datetime) -> Reporter:
    """The machine this credential authenticates as `machine_id`; raises why not."""
    row = executor.execute(_REPORTER, {"digest": secrets.digest(credential)}).first()
    return checked_reporter(row, machine_id, credential, now=now)


ReporterRow = Row[str, str, datetime, str, str, int, bool, datetime | None, int]
"""A row of ``_REPORTER``: machine id, credential digest and expiry, tier, kernel, token,
duplicate, the token's revocation and machine limit."""


def checked_reporter(
    row: ReporterRow | None, machine_id: str, credential: str, *, now: datetime
) -> Reporter:
    """The machine of `row` (found by the credential's digest), or why it must not report."""
    if row is None or not secrets.matches(credential, row.credential_digest):
        raise Unauthenticated()
    if row.credential_expires <= now:
        raise Unauthenticated(EXPIRED)
    if row.machine_id != machine_id:
        raise Forbidden("This credential belongs to another machine: use the machine's own.")
    if row.revoked is not None:
        raise TokenRevoked()
    return Reporter(
        row.machine_id,
        Tier(row.tier),
        row.kernel,
        row.token_id,
        row.duplicate,
        row.machine_limit,
    )


def patch_facts(executor: Executor, patch_id: str) -> PatchFacts:
    row = executor.execute(_PATCH, {"patch_id": patch_id}).first()
    if row is None:
        raise NotFound(f"No patch {patch_id!r}: report only patches the service published.")
    state = RolloutState(Stage(row.stage), float(row.percentage))
    return PatchFacts(patch_id, list(row.kernels), state)


def accept(
    executor: Executor,
    machine_id: str,
    credential: str,
    outcome: Outcome,
    *,
    now: datetime,
    patches: dict[str, PatchFacts] | None = None,
) -> str:
    """Authenticate, check and store one report; the stage it was counted in.

    Raises the ServerError that explains a refusal (nothing is written then).
    `patches` remembers the patches read within one transaction (a batch).
    """
    machine = reporter(executor, machine_id, credential, now=now)
    patch = None if patches is None else patches.get(outcome.patch_id)
    if patch is None:
        patch = patch_facts(executor, outcome.patch_id)
        if patches is not None:
            patches[patch.patch_id] = patch
    refused = refusal(machine, patch, outcome)
    if refused is not None:
        raise refused
    return record(executor, machine, outcome, patch.state.stage.value, now=now)


@dataclass(frozen=True)
class Claim:
    """One report as received: who says they sent it, and when."""

    machine_id: str
    credential: str
    outcome: Outcome
    now: datetime


def accept_many(
    connection: Connection,
    claims: Sequence[Claim],
    patches: dict[str, PatchFacts],
    budget: TokenBudget | None = None,
) -> list[str | ServerError]:
    """``accept`` for a batch, in one transaction: for each claim its stage or its refusal.

    The same rules as ``accept``, with one query for every reporter and one
    statement (executed many times, pipelined by the driver) for every
    counted report, instead of two round trips per report. `patches`
    remembers the patches read (a patch is read once per batch). With a
    `budget`, each authenticated report takes one from its token's, and one
    over it is refused with ``RateLimited`` (429), whatever else is wrong.
    """
    digests = [secrets.digest(claim.credential) for claim in claims]
    rows = {
        row.credential_digest: row
        for row in connection.execute(
            _REPORTERS_ARRAY if connection.dialect.name == "postgresql" else _REPORTERS,
            {"digests": sorted(set(digests))},
        )
    }
    results: list[str | ServerError] = []
    counted: list[dict[str, Any]] = []
    for claim, digest in zip(claims, digests, strict=True):
        try:
            machine = checked_reporter(
                rows.get(digest), claim.machine_id, claim.credential, now=claim.now
            )
            if budget is not None and machine.token_id is not None:
                wait = budget.take(machine.token_id, machine.machine_limit)
                if wait > 0:
                    raise RateLimited(wait)
            patch = patches.get(claim.outcome.patch_id)
            if patch is None:
                patch = patches[claim.outcome.patch_id] = patch_facts(
                    connection, claim.outcome.patch_id
                )
            refused = refusal(machine, patch, claim.outcome)
            if refused is not None:
                raise refused
        except ServerError as error:
            results.append(error)
            continue
        stage = patch.state.stage.value
        counted.append(_row(machine, claim.outcome, stage, now=claim.now))
        results.append(stage)
    if counted:
        connection.execute(_upsert(connection.dialect.name), counted)
    return results


def record(
    executor: Executor, machine: Reporter, outcome: Outcome, stage: str, *, now: datetime
) -> str:
    """Store the machine's latest outcome for the patch in `stage` (upsert)."""
    bind = executor.get_bind() if isinstance(executor, Session) else executor
    executor.execute(_upsert(bind.dialect.name), _row(machine, outcome, stage, now=now))
    return stage


def _row(machine: Reporter, outcome: Outcome, stage: str, *, now: datetime) -> dict[str, Any]:
    """The parameters of ``_upsert`` for one report."""
    return {
        "machine_id": machine.machine_id,
        "patch_id": outcome.patch_id,
        "stage": stage,
        "kernel": outcome.kernel,
        "result": outcome.result.value,
        "errno": outcome.errno,
        "reason": outcome.reason,
        "duration_ms": outcome.duration_ms,
        "taint": outcome.taint,
        "received": now,
        "health": None if outcome.health is None else outcome.health.value,
        "evidence": outcome.evidence,
        "token_id": machine.token_id,
    }


def stage_outcomes(executor: Executor, patch_id: str, stage: str, *, since: datetime) -> Outcomes:
    """Counted outcomes in `stage` received since `since` (the stage start or the last resume).

    At most ``machine_limit`` reports per token count (the earliest rows), and
    none of a revoked token.
    """
    rank = func.row_number().over(partition_by=Report.token_id, order_by=Report.id).label("rank")
    ranked = (
        select(Report.result, Report.health, Report.token_id, Token.machine_limit, rank)
        .outerjoin(Token, Token.id == Report.token_id)
        .where(
            Report.patch_id == patch_id,
            Report.stage == stage,
            Report.received >= since,
            Report.result != Result.REVERTED.value,
            or_(Report.token_id.is_(None), Token.revoked.is_(None)),
        )
        .subquery()
    )
    rows = executor.execute(
        select(ranked.c.result, ranked.c.health, ranked.c.token_id, func.count())
        .where(
            or_(
                ranked.c.token_id.is_(None),
                and_(ranked.c.machine_limit.is_not(None), ranked.c.rank <= ranked.c.machine_limit),
            )
        )
        .group_by(ranked.c.result, ranked.c.health, ranked.c.token_id)
    )
    return tally((str(r), h, t, int(n)) for r, h, t, n in rows)


def tally(rows: Any) -> Outcomes:
    """Outcomes from (result, health, token_id, count) rows (pure)."""
    healthy = failed = pending = 0
    healthy_tokens: set[int | None] = set()
    failed_tokens: set[int | None] = set()
    for result, health, token, count in rows:
        if result == Result.APPLIED.value and health == Health.HEALTHY.value:
            healthy += count
            healthy_tokens.add(token)
        elif result == Result.APPLIED.value and health is None:
            pending += count
        else:
            failed += count
            failed_tokens.add(token)
    return Outcomes(
        applied=healthy,
        failed=failed,
        pending=pending,
        healthy_tokens=len(healthy_tokens),
        failed_tokens=len(failed_tokens),
    )


def aggregates(executor: Executor, patch_id: str) -> list[Aggregate]:
    failures = or_(
        Report.result.in_([Result.FAILED.value, Result.CRASHED.value]),
        and_(Report.result == Result.APPLIED.value, Report.health == Health.UNHEALTHY.value),
    )
    rows = executor.execute(
        select(
            Report.stage,
            Report.kernel,
            func.count(
                case(
                    (
                        and_(
                            Report.result == Result.APPLIED.value,
                            or_(Report.health.is_(None), Report.health != "unhealthy"),
                        ),
                        1,
                    )
                )
            ),
            func.count(case((failures, 1))),
        )
        .where(Report.patch_id == patch_id)
        .group_by(Report.stage, Report.kernel)
        .order_by(Report.stage, Report.kernel)
    )
    return [Aggregate(stage, kernel, int(a), int(f)) for stage, kernel, a, f in rows]
