"""Enrolment, credential renewal, kernel changes, de-enrolment and apply reports."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from livepatch.server import machines, reports
from livepatch.server.api.deps import CredentialDep, ServiceDep
from livepatch.server.api.schemas import (
    EnrolRequest,
    EnrolResponse,
    KernelRequest,
    KernelResponse,
    RenewResponse,
    ReportRequest,
    ReportResponse,
    errors,
)
from livepatch.server.errors import ServerError
from livepatch.server.service import Service

router = APIRouter(prefix="/v1", tags=["machines"])
MachinePath = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$", description="The machine id.")
]


@router.post(
    "/enrol",
    status_code=201,
    response_model=EnrolResponse,
    responses=errors(401, 403, 409, 413, 422, 429, 503),
    summary="Enrol a machine with a token",
)
def enrol(body: EnrolRequest, service: ServiceDep, request: Request) -> EnrolResponse:
    facts = machines.MachineFacts(
        body.machine_id,
        body.hostname,
        body.kernel,
        body.architecture,
        machines.client_version(request.headers.get("user-agent")),
    )
    try:
        with service.transaction() as session:
            credential = machines.enrol(
                session,
                body.token,
                facts,
                now=service.clock(),
                lifetime=service.config.credential_lifetime,
                proof=body.proof,
            )
    except ServerError as error:
        service.metrics.inc("livepatch_enrolment_refusals_total", code=error.code)
        raise
    service.metrics.inc("livepatch_enrolments_total")
    if credential.duplicate:
        service.metrics.inc("livepatch_duplicate_enrolments_total")
    return EnrolResponse(
        machine_id=credential.machine_id,
        credential=credential.credential,
        expires=credential.expires,
        tier=credential.tier.value,
        root=service.root(),
        duplicate=credential.duplicate,
    )


@router.post(
    "/machines/{machine_id}/renew",
    response_model=RenewResponse,
    responses=errors(401, 403, 422, 503),
    summary="Replace the machine's credential before it expires",
)
def renew(
    machine_id: MachinePath, credential: CredentialDep, service: ServiceDep, request: Request
) -> RenewResponse:
    with service.transaction() as session:
        renewed = machines.renew(
            session,
            machine_id,
            credential,
            now=service.clock(),
            lifetime=service.config.credential_lifetime,
            version=machines.client_version(request.headers.get("user-agent")),
        )
    service.checkins.forget(credential)
    return RenewResponse(credential=renewed.credential, expires=renewed.expires)


@router.put(
    "/machines/{machine_id}/kernel",
    response_model=KernelResponse,
    responses=errors(401, 403, 422, 429, 503),
    summary="Record the kernel the machine booted since it enrolled",
)
def boot_kernel(
    machine_id: MachinePath, body: KernelRequest, credential: CredentialDep, service: ServiceDep
) -> KernelResponse:
    """Reports count for the kernel on record: a machine that booted another kernel
    says so with its credential (it cannot change any other record)."""
    change = machines.KernelChange(body.kernel, body.architecture)
    with service.transaction() as session:
        machines.boot_kernel(session, machine_id, credential, change, now=service.clock())
    service.metrics.inc("livepatch_kernel_changes_total")
    return KernelResponse(kernel=change.kernel, architecture=change.architecture)


@router.delete(
    "/machines/{machine_id}",
    status_code=204,
    response_class=Response,
    responses=errors(401, 403, 422, 503),
    summary="De-enrol the machine, freeing its token slot",
)
def deenrol(machine_id: MachinePath, credential: CredentialDep, service: ServiceDep) -> Response:
    with service.transaction() as session:
        machines.deenrol(session, machine_id, credential, now=service.clock())
    service.checkins.forget(credential)
    return Response(status_code=204)


@router.post(
    "/machines/{machine_id}/reports",
    status_code=202,
    response_model=ReportResponse,
    responses=errors(401, 403, 404, 413, 422, 429, 503),
    summary="Report the outcome of applying a patch",
)
async def report(
    machine_id: MachinePath, body: ReportRequest, credential: CredentialDep, service: ServiceDep
) -> ReportResponse:
    return ReportResponse(stage=await record_report(service, machine_id, credential, body))


async def record_report(
    service: Service, machine_id: str, credential: str, body: ReportRequest
) -> str:
    """Store the report (raising why it is refused); the stage it was counted in."""
    outcome = reports.Outcome(
        patch_id=body.patch_id,
        kernel=body.kernel,
        result=reports.Result(body.result),
        errno=body.errno,
        reason=body.reason,
        duration_ms=body.duration_ms,
        taint=body.taint,
        health=None if body.health is None else reports.Health(body.health),
        evidence=body.evidence,
    )
    # Written with other reports in one transaction by the telemetry writer.
    written = service.telemetry.report(machine_id, credential, outcome, service.clock())
    try:
        stage = await asyncio.wrap_future(written)
    except ServerError as error:
        service.metrics.inc("livepatch_report_refusals_total", code=error.code)
        raise
    service.metrics.inc("livepatch_reports_total", result=body.result)
    return stage
