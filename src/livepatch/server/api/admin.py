"""The admin API under ``/v1/admin``: what `livepatch-admin` does, over HTTPS.

Every request carries an administrator's API key in ``X-Admin-Key``; the
role it needs is declared per route (viewer reads, operator steers
rollouts, admin manages tokens and administrators). Changes are audited
with the administrator's name and the client's address (see
``operations.py``, shared with the local command).

Publishing here cannot run the pre-flight (it boots each kernel in a VM):
such patches are marked as not pre-flighted (``preflight.result`` skipped);
``livepatch-admin publish`` on the service's host runs it.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Security
from fastapi.security import APIKeyHeader
from pydantic import Field

from livepatch.rollout import Stage, Tier
from livepatch.server import admins, audit, fleet, operations, patches
from livepatch.server.admins import Role
from livepatch.server.api.deps import ServiceDep
from livepatch.server.api.schemas import KernelKey, errors
from livepatch.server.api.schemas import Request as StrictBody
from livepatch.server.audit import Actor
from livepatch.server.errors import InvalidRequest, Unauthenticated
from livepatch.server.fleet_query import CURSOR_PATTERN
from livepatch.server.service import Service

ADMIN_KEY_HEADER = "X-Admin-Key"
MAX_MODULE_BYTES = 16 * 1024 * 1024
_admin_key = APIKeyHeader(
    name=ADMIN_KEY_HEADER,
    auto_error=False,
    scheme_name="admin-key",
    description="An administrator's API key (`livepatch-admin admins create`).",
)

router = APIRouter(prefix="/v1/admin", tags=["admin"])
Document = dict[str, Any]
AdminName = Annotated[str, Path(pattern=r"^[a-z][a-z0-9._-]{0,63}$")]
TokenRef = Annotated[str, Path(pattern=r"^[A-Za-z0-9]{1,32}$", description="Id or hint.")]
PatchPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9._+~-]{1,255}$")]
MachinePath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
KernelPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9._+~-]{1,255}$")]
Text = Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[^\x00-\x1f\x7f]*$")]


def authenticate(service: Service, key: str | None) -> admins.AdminInfo:
    if key is None:
        raise Unauthenticated(
            f"This needs an administrator's API key in the {ADMIN_KEY_HEADER} header."
        )
    with service.transaction(readonly=True) as session:
        return admins.authenticate(session, key)


def _needs(role: Role) -> Any:
    def check(
        request: Request,
        service: ServiceDep,
        key: Annotated[str | None, Security(_admin_key)],
    ) -> Actor:
        admin = authenticate(service, key)
        admins.require(admin, role)
        source = request.client.host if request.client is not None else "unknown"
        return Actor(admin.name, source)

    return Depends(check)


Viewer = Annotated[Actor, _needs(Role.VIEWER)]
Operator = Annotated[Actor, _needs(Role.OPERATOR)]
Administrator = Annotated[Actor, _needs(Role.ADMIN)]
READ = errors(401, 403, 422, 503)
CHANGE = errors(401, 403, 404, 409, 422, 503)


class TokenRequest(StrictBody):
    tier: Literal["community", "stable"] = "community"
    machines: Annotated[int, Field(ge=1, le=1_000_000)] | None = None


class PublishRequest(StrictBody):
    module_base64: Annotated[str, Field(max_length=MAX_MODULE_BYTES * 4 // 3 + 4)]
    kernels: Annotated[list[KernelKey], Field(min_length=1, max_length=64)]
    cves: Annotated[
        list[Annotated[str, Field(pattern=r"^CVE-[0-9]{4}-[0-9]{4,}$")]],
        Field(min_length=1, max_length=256),
    ]
    severity: Literal["low", "medium", "high", "critical"]
    description: Text
    overrides: dict[
        Literal[
            "canary_percentage",
            "moderate_percentage",
            "canary_soak_hours",
            "moderate_soak_hours",
            "minimum_applied",
        ],
        Annotated[float, Field(ge=0, le=100_000)],
    ] = Field(default_factory=dict)


class PromoteRequest(StrictBody):
    to: Literal["canary", "moderate", "all"] | None = None


class HaltRequest(StrictBody):
    reason: Text = "halted by an administrator"


class RevokeRequest(StrictBody):
    reason: Text


class AdminRequest(StrictBody):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9._-]{0,63}$")]
    role: Literal["viewer", "operator", "admin"]


class EndOfLifeRequest(StrictBody):
    end_of_life: Annotated[datetime, Field(strict=False)]


@router.get("/whoami", responses=READ, summary="The administrator this key belongs to")
def whoami(actor: Viewer, service: ServiceDep, request: Request) -> Document:
    admin = authenticate(service, request.headers.get(ADMIN_KEY_HEADER))
    return {"name": actor.name, "role": admin.role.value}


@router.get("/tokens", responses=READ, summary="List enrolment tokens")
def list_tokens(_actor: Viewer, service: ServiceDep) -> list[Document]:
    return operations.list_tokens(service)


@router.post("/tokens", status_code=201, responses=CHANGE, summary="Create a token (shown once)")
def create_token(body: TokenRequest, actor: Administrator, service: ServiceDep) -> Document:
    return operations.create_token(service, actor, tier=Tier(body.tier), machines=body.machines)


@router.post("/tokens/{token}/revoke", responses=CHANGE, summary="Revoke a token")
def revoke_token(token: TokenRef, actor: Administrator, service: ServiceDep) -> Document:
    return operations.revoke_token(service, actor, token)


@router.get("/patches", responses=READ, summary="List patches and their rollout")
def list_patches(_actor: Viewer, service: ServiceDep) -> list[Document]:
    return operations.list_patches(service)


@router.get("/patches/{patch_id}", responses=errors(401, 403, 404, 422, 503), summary="A patch")
def show_patch(patch_id: PatchPath, _actor: Viewer, service: ServiceDep) -> Document:
    return operations.show_patch(service, patch_id)


@router.post("/patches", status_code=201, responses=CHANGE, summary="Sign and publish a module")
def publish(body: PublishRequest, actor: Operator, service: ServiceDep) -> Document:
    try:
        module = base64.b64decode(body.module_base64, validate=True)
    except (binascii.Error, ValueError) as error:
        raise InvalidRequest("module_base64 is not base64: encode the .ko file.") from error
    if len(module) > MAX_MODULE_BYTES:
        raise InvalidRequest(f"The module is larger than {MAX_MODULE_BYTES} bytes.")
    publication = patches.Publication(
        module=module,
        kernels=list(body.kernels),
        cves=list(body.cves),
        severity=patches.Severity(body.severity),
        description=body.description,
        overrides={str(k): v for k, v in body.overrides.items()},
    )
    return operations.publish(service, actor, publication)


@router.post("/patches/{patch_id}/promote", responses=CHANGE, summary="Promote a patch now")
def promote(
    patch_id: PatchPath, body: PromoteRequest, actor: Operator, service: ServiceDep
) -> Document:
    to = Stage(body.to) if body.to else None
    return operations.promote(service, actor, patch_id, to)


@router.post("/patches/{patch_id}/halt", responses=CHANGE, summary="Halt a patch's rollout")
def halt(patch_id: PatchPath, body: HaltRequest, actor: Operator, service: ServiceDep) -> Document:
    return operations.halt(service, actor, patch_id, body.reason)


@router.post("/patches/{patch_id}/resume", responses=CHANGE, summary="Lift a halt")
def resume(patch_id: PatchPath, actor: Operator, service: ServiceDep) -> Document:
    return operations.resume(service, actor, patch_id)


@router.post("/patches/{patch_id}/withdraw", responses=CHANGE, summary="Withdraw a patch")
def withdraw(patch_id: PatchPath, actor: Operator, service: ServiceDep) -> Document:
    return operations.withdraw(service, actor, patch_id)


@router.post(
    "/patches/{patch_id}/revoke",
    responses=CHANGE,
    summary="Revoke a patch: every machine that has it leaves it (signed)",
)
def revoke(
    patch_id: PatchPath, body: RevokeRequest, actor: Operator, service: ServiceDep
) -> Document:
    return operations.revoke(service, actor, patch_id, body.reason)


@router.get(
    "/machines",
    responses=READ,
    summary="List machines, filtered, a page at a time",
    description=(
        "Machines in `(machine_id, record)` order. The answer is "
        '`{"items": [...], "next": CURSOR}`: pass `next` as `after` for the following '
        "page; it is null on the last one. Filters combine (all must hold)."
    ),
)
def list_machines(
    _actor: Viewer,
    service: ServiceDep,
    state: fleet.MachineState | None = None,
    kernel: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._+~-]{1,255}$")] = None,
    patch: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._+~-]{1,255}$")] = None,
    token: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="A token id.")] = None,
    architecture: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,32}$")] = None,
    limit: Annotated[int, Query(ge=1, le=fleet.MAX_PAGE)] = fleet.DEFAULT_PAGE,
    after: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, max_length=140, description="`next` of the previous page."),
    ] = None,
) -> Document:
    filters = fleet.Filters(state, kernel, patch, token, architecture)
    return operations.list_machines(service, filters, limit=limit, after=after)


@router.get(
    "/machines/{machine_id}",
    responses=errors(401, 403, 404, 422, 503),
    summary="A machine and its history",
)
def show_machine(machine_id: MachinePath, _actor: Viewer, service: ServiceDep) -> Document:
    return operations.show_machine(service, machine_id)


@router.put(
    "/kernels/{kernel}/end-of-life",
    responses=CHANGE,
    summary="Set a kernel's end of life (the kernel-support API answers kernel-end-of-life)",
)
def set_end_of_life(
    kernel: KernelPath, body: EndOfLifeRequest, actor: Operator, service: ServiceDep
) -> Document:
    return operations.set_end_of_life(service, actor, kernel, body.end_of_life)


@router.get("/keys", responses=READ, summary="What expires when: certificates, metadata")
def keys_status(_actor: Viewer, service: ServiceDep) -> list[Document]:
    return operations.keys_status(service)


@router.get("/admins", responses=READ, summary="List administrators")
def list_admins(_actor: Administrator, service: ServiceDep) -> list[Document]:
    return operations.list_admins(service)


@router.post("/admins", status_code=201, responses=CHANGE, summary="Create an administrator")
def create_admin(body: AdminRequest, actor: Administrator, service: ServiceDep) -> Document:
    return operations.create_admin(service, actor, body.name, Role(body.role))


@router.post("/admins/{name}/revoke", responses=CHANGE, summary="Revoke an administrator's key")
def revoke_admin(name: AdminName, actor: Administrator, service: ServiceDep) -> Document:
    return operations.revoke_admin(service, actor, name)


@router.get(
    "/audit",
    responses=READ,
    summary="The audit log, newest first, a page at a time",
    description=(
        '`{"items": [...], "next": CURSOR}`: pass `next` as `after` for older entries; '
        "it is null on the last page."
    ),
)
def audit_log(
    _actor: Viewer,
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=audit.MAX_PAGE)] = 100,
    after: Annotated[
        str | None, Query(pattern=r"^[0-9]{1,10}$", description="`next` of the previous page.")
    ] = None,
) -> Document:
    return operations.audit_log(service, limit=limit, after=after)
