"""Apply outcomes reported by machines, and their aggregates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from livepatch.server.engine import Outcomes
from livepatch.server.errors import NotFound
from livepatch.server.storage.models import Patch, Report


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


def record(session: Session, machine_id: str, outcome: Outcome, *, now: datetime) -> str:
    """Store the machine's latest outcome for the patch in its current stage.

    Returns the stage the report was counted in.
    """
    stage = session.scalar(select(Patch.stage).where(Patch.patch_id == outcome.patch_id))
    if stage is None:
        raise NotFound(f"No patch {outcome.patch_id!r}: report only patches the service published.")
    values: dict[str, Any] = {
        "machine_id": machine_id,
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
    }
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(Report).values(values)
    update = {
        k: statement.excluded[k] for k in values if k not in ("machine_id", "patch_id", "stage")
    }
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["machine_id", "patch_id", "stage"], set_=update
        )
    )
    return stage


def stage_outcomes(session: Session, patch_id: str, stage: str, *, since: datetime) -> Outcomes:
    """Outcomes in `stage` received since `since` (the stage start or the last resume)."""
    applied, failed = session.execute(
        select(
            func.count(case((Report.result == Result.APPLIED.value, 1))),
            func.count(case((Report.result == Result.FAILED.value, 1))),
        ).where(Report.patch_id == patch_id, Report.stage == stage, Report.received >= since)
    ).one()
    return Outcomes(applied=int(applied), failed=int(failed))


def aggregates(session: Session, patch_id: str) -> list[Aggregate]:
    rows = session.execute(
        select(
            Report.stage,
            Report.kernel,
            func.count(case((Report.result == Result.APPLIED.value, 1))),
            func.count(case((Report.result == Result.FAILED.value, 1))),
        )
        .where(Report.patch_id == patch_id)
        .group_by(Report.stage, Report.kernel)
        .order_by(Report.stage, Report.kernel)
    )
    return [Aggregate(stage, kernel, int(a), int(f)) for stage, kernel, a, f in rows]
