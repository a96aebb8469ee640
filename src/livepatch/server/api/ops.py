"""Liveness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from sqlalchemy import func, select, text

from livepatch.server.api.deps import ServiceDep
from livepatch.server.api.schemas import Health, errors
from livepatch.server.metrics import Labels
from livepatch.server.service import Service
from livepatch.server.storage.models import Machine, Patch

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
        503: {
            "description": "The database is unavailable.",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
            },
        },
    },
    summary="Prometheus metrics",
)
def metrics(service: ServiceDep) -> PlainTextResponse:
    return PlainTextResponse(
        service.metrics.render(gauges(service)), media_type="text/plain; version=0.0.4"
    )


def gauges(service: Service) -> list[tuple[str, str, dict[Labels, float]]]:
    with service.transaction(readonly=True) as session:
        machines = session.execute(select(Machine.tier, func.count()).group_by(Machine.tier))
        by_tier: dict[Labels, float] = {(("tier", t),): float(n) for t, n in machines}
        patches = session.execute(
            select(Patch.stage, Patch.halted, func.count())
            .where(Patch.withdrawn.is_(False))
            .group_by(Patch.stage, Patch.halted)
        )
        by_stage: dict[Labels, float] = {
            (("halted", str(h).lower()), ("stage", s)): float(n) for s, h, n in patches
        }
    return [
        ("livepatch_machines", "Enrolled machines, by tier.", by_tier),
        ("livepatch_patches", "Published patches, by stage and halt.", by_stage),
    ]
