"""Liveness and Prometheus metrics."""

from __future__ import annotations

import hmac

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from sqlalchemy import func, select, text

from livepatch.server.api.deps import OptionalCredentialDep, ServiceDep
from livepatch.server.api.schemas import Health, errors
from livepatch.server.errors import Unauthenticated
from livepatch.server.metrics import Labels, Series
from livepatch.server.patches import HALT, PROMOTION
from livepatch.server.service import Service
from livepatch.server.storage.models import Machine, Patch, RolloutEvent

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, responses=errors(503), summary="Liveness")
def healthz(service: ServiceDep) -> Health:
    with service.transaction(readonly=True) as session:
        session.execute(text("SELECT 1"))
    return Health(status="ok")


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/plain": {}}},
        401: {
            "description": "The server has a metrics token and the request did not give it.",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
            },
        },
        503: {
            "description": "The database is unavailable.",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
            },
        },
    },
    summary="Prometheus metrics",
)
def metrics(service: ServiceDep, credential: OptionalCredentialDep = None) -> PlainTextResponse:
    expected = service.config.metrics_token
    if expected is not None and (
        credential is None or not hmac.compare_digest(credential.encode(), expected.encode())
    ):
        raise Unauthenticated(
            "This server's metrics need 'Authorization: Bearer <metrics_token>' "
            "(server.metrics_token in config.toml)."
        )
    counters, gauges = database_series(service)
    return PlainTextResponse(
        service.metrics.render(gauges, counters), media_type="text/plain; version=0.0.4"
    )


EVENT_COUNTERS = {
    PROMOTION: (
        "livepatch_promotions_total",
        "Patches promoted to a further stage, by stage reached and trigger "
        "(automatic: the rollout engine; manual: an administrator).",
    ),
    HALT: (
        "livepatch_halts_total",
        "Patches halted, by stage and trigger (automatic: the rollout engine; "
        "manual: an administrator).",
    ),
}


def database_series(service: Service) -> tuple[list[Series], list[Series]]:
    """The counters and the gauges read from the database, in one read-only transaction."""
    with service.transaction(readonly=True) as session:
        events = session.execute(
            select(
                RolloutEvent.action, RolloutEvent.stage, RolloutEvent.trigger, func.count()
            ).group_by(RolloutEvent.action, RolloutEvent.stage, RolloutEvent.trigger)
        )
        by_action: dict[str, dict[Labels, float]] = {action: {} for action in EVENT_COUNTERS}
        for action, stage, trigger, n in events:
            if action in by_action:
                by_action[action][(("stage", stage), ("trigger", trigger))] = float(n)
        machines = session.execute(select(Machine.tier, func.count()).group_by(Machine.tier))
        by_tier: dict[Labels, float] = {(("tier", t),): float(n) for t, n in machines}
        duplicates = session.scalar(
            select(func.count()).select_from(Machine).where(Machine.duplicate.is_(True))
        )
        patches = session.execute(
            select(Patch.stage, Patch.halted, func.count())
            .where(Patch.withdrawn.is_(False))
            .group_by(Patch.stage, Patch.halted)
        )
        by_stage: dict[Labels, float] = {
            (("halted", str(h).lower()), ("stage", s)): float(n) for s, h, n in patches
        }
    counters: list[Series] = [
        (name, help_text, by_action[action]) for action, (name, help_text) in EVENT_COUNTERS.items()
    ]
    gauges: list[Series] = [
        ("livepatch_machines", "Enrolled machines, by tier.", by_tier),
        ("livepatch_patches", "Published patches, by stage and halt.", by_stage),
        (
            "livepatch_duplicate_machines",
            "Machine records whose id another machine enrolled first without proof of being it "
            "(cloned images or impostors); their reports are not counted.",
            {(): float(duplicates or 0)},
        ),
    ]
    return counters, gauges
