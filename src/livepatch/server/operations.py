"""What an administrator can do, as JSON documents: one code path for the admin
API and the local `livepatch-admin`.

Each function takes the service and the acting administrator, does the
change or the read, writes the audit entry for a change, and returns the
document the API answers with (and `livepatch-admin --format json` prints,
locally or through `--server`). A catalogue change commits under the
publisher's lock in its own transaction; its audit entry is written right
after it succeeded, so a change that failed is never logged as done.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from livepatch.rollout import Stage, Tier
from livepatch.server import admins, audit, fleet, fleet_query, patches, tokens
from livepatch.server.audit import Actor
from livepatch.server.errors import InvalidRequest
from livepatch.server.service import Service
from livepatch.server.storage.models import KernelLifecycle

Document = dict[str, Any]


def _log(service: Service, actor: Actor, action: str, target: str, detail: str = "") -> None:
    with service.transaction() as session:
        audit.record(session, actor, action, target, now=service.clock(), detail=detail)


# Tokens


def token_document(info: tokens.TokenInfo) -> Document:
    document = dataclasses.asdict(info)
    document["tier"] = info.tier.value
    document["created"] = info.created.isoformat()
    document["revoked"] = info.revoked.isoformat() if info.revoked else None
    return document


def create_token(service: Service, actor: Actor, *, tier: Tier, machines: int | None) -> Document:
    now = service.clock()
    with service.transaction() as session:
        created = tokens.create_token(session, tier=tier, machines=machines, now=now)
        info = created.info
        detail = f"{info.tier.value}, {info.machine_limit} machines"
        audit.record(session, actor, "token.create", f"token {info.id}", now=now, detail=detail)
    return {"token": created.secret, **token_document(info)}


def list_tokens(service: Service) -> list[Document]:
    with service.transaction(readonly=True) as session:
        return [token_document(t) for t in tokens.list_tokens(session)]


def revoke_token(service: Service, actor: Actor, reference: str) -> Document:
    now = service.clock()
    with service.transaction() as session:
        info = tokens.revoke_token(session, reference, now=now)
        audit.record(session, actor, "token.revoke", f"token {info.id}", now=now)
    return token_document(info)


# Patches


def patch_document(info: patches.PatchInfo) -> Document:
    return {
        "patch_id": info.patch_id,
        "version": info.version,
        "kernels": info.kernels,
        "module_name": info.module_name,
        "target": info.target_name,
        "sha256": info.sha256,
        "length": info.length,
        "severity": info.severity,
        "description": info.description,
        "cves": info.cves,
        "rollout": {
            "stage": info.state.stage.value,
            "percentage": info.state.percentage,
            "halted": info.state.halted,
            "halt_reason": info.halt_reason,
            "since": info.stage_started.isoformat(),
        },
        "withdrawn": info.withdrawn,
        "revoked": None if info.revoked is None else info.revoked.to_fields(),
        "preflight": info.preflight,
        "created": info.created.isoformat(),
    }


def list_patches(service: Service) -> list[Document]:
    return [patch_document(i) for i in patches.list_patches(service)]


def show_patch(service: Service, patch_id: str) -> Document:
    detail = patches.show(service, patch_id)
    return {
        **patch_document(detail.info),
        "reports": [
            {"stage": a.stage, "kernel": a.kernel, "applied": a.applied, "failed": a.failed}
            for a in detail.aggregates
        ],
        "engine": {"action": detail.decision.action.value, "reason": detail.decision.reason},
    }


def publish(service: Service, actor: Actor, publication: patches.Publication) -> Document:
    """Publish; without a pre-flight record (the API cannot boot kernels) it is marked skipped."""
    if publication.preflight is None:
        skipped = patches.skipped_preflight(publication.kernels, service.clock())
        publication = dataclasses.replace(publication, preflight=skipped)
    info = patches.publish(service, publication)
    _log(service, actor, "patch.publish", info.patch_id, f"kernels {','.join(info.kernels)}")
    return patch_document(info)


def promote(service: Service, actor: Actor, patch_id: str, to: Stage | None) -> Document:
    info = patches.promote(service, patch_id, to)
    _log(service, actor, "patch.promote", patch_id, f"to {info.state.stage.value}")
    return patch_document(info)


def halt(service: Service, actor: Actor, patch_id: str, reason: str) -> Document:
    info = patches.halt(service, patch_id, reason)
    _log(service, actor, "patch.halt", patch_id, reason)
    return patch_document(info)


def resume(service: Service, actor: Actor, patch_id: str) -> Document:
    info = patches.resume(service, patch_id)
    _log(service, actor, "patch.resume", patch_id)
    return patch_document(info)


def withdraw(service: Service, actor: Actor, patch_id: str) -> Document:
    info = patches.withdraw(service, patch_id)
    _log(service, actor, "patch.withdraw", patch_id)
    return patch_document(info)


def revoke(service: Service, actor: Actor, patch_id: str, reason: str) -> Document:
    info = patches.revoke(service, patch_id, reason)
    _log(service, actor, "patch.revoke", patch_id, reason)
    return patch_document(info)


# Machines


def _outcome_document(outcome: fleet.Outcome | None) -> Document | None:
    if outcome is None:
        return None
    return {
        "patch_id": outcome.patch_id,
        "stage": outcome.stage,
        "result": outcome.result,
        "health": outcome.health,
        "reason": outcome.reason,
        "received": outcome.received.isoformat(),
    }


def machine_document(view: fleet.MachineView) -> Document:
    return {
        "machine_id": view.machine_id,
        "hostname": view.hostname,
        "kernel": view.kernel,
        "architecture": view.architecture,
        "tier": view.tier,
        "token_id": view.token_id,
        "first_seen": view.first_seen.isoformat(),
        "last_check_in": view.last_check_in.isoformat(),
        "client_version": view.client_version,
        "patch_loaded": view.patch_loaded,
        "last_outcome": _outcome_document(view.last_outcome),
        "supported": view.support.value,
        "states": [s.value for s in view.states],
        "duplicate": view.duplicate,
    }


def list_machines(
    service: Service,
    filters: fleet.Filters,
    *,
    limit: int = fleet.DEFAULT_PAGE,
    after: str | None = None,
) -> Document:
    """A page of machines: ``items``, and ``next`` to pass as `after` for the next page."""
    cursor = fleet_query.Cursor.decode(after) if after is not None else None
    with service.transaction(readonly=True) as session:
        page = fleet.list_machines(session, filters, now=service.clock(), limit=limit, after=cursor)
    return {
        "items": [machine_document(v) for v in page.machines],
        "next": page.next.encode() if page.next is not None else None,
    }


def show_machine(service: Service, machine_id: str) -> Document:
    with service.transaction(readonly=True) as session:
        view, history = fleet.show_machine(session, machine_id, now=service.clock())
    return {**machine_document(view), "history": [_outcome_document(o) for o in history]}


# Kernels


def set_end_of_life(service: Service, actor: Actor, kernel: str, when: datetime) -> Document:
    if when.tzinfo is None:
        raise InvalidRequest("Give the end of life with a time zone, e.g. 2027-01-01T00:00:00Z.")
    now = service.clock()
    with service.transaction() as session:
        row = session.get(KernelLifecycle, kernel)
        if row is None:
            session.add(KernelLifecycle(kernel=kernel, end_of_life=when))
        else:
            row.end_of_life = when
        audit.record(session, actor, "kernel.end-of-life", kernel, now=now, detail=when.isoformat())
    return {"kernel": kernel, "end_of_life": when.isoformat()}


# Administrators and the audit log


def admin_document(info: admins.AdminInfo) -> Document:
    return {
        "id": info.id,
        "name": info.name,
        "role": info.role.value,
        "created": info.created.isoformat(),
        "revoked": info.revoked.isoformat() if info.revoked else None,
    }


def create_admin(service: Service, actor: Actor, name: str, role: admins.Role) -> Document:
    now = service.clock()
    with service.transaction() as session:
        created = admins.create(session, name, role, now=now)
        audit.record(session, actor, "admin.create", name, now=now, detail=role.value)
    return {"key": created.key, **admin_document(created.info)}


def list_admins(service: Service) -> list[Document]:
    with service.transaction(readonly=True) as session:
        return [admin_document(a) for a in admins.list_admins(session)]


def revoke_admin(service: Service, actor: Actor, name: str) -> Document:
    now = service.clock()
    with service.transaction() as session:
        info = admins.revoke(session, name, now=now)
        audit.record(session, actor, "admin.revoke", name, now=now)
    return admin_document(info)


def audit_log(service: Service, *, limit: int, after: str | None = None) -> Document:
    """A page of the audit log, newest first: ``items``, and ``next`` to pass as `after`."""
    with service.transaction(readonly=True) as session:
        page = audit.entries(session, limit=limit, after=audit.cursor(after))
    items = [
        {
            "id": e.id,
            "at": e.at.isoformat(),
            "actor": e.actor,
            "source": e.source,
            "action": e.action,
            "target": e.target,
            "detail": e.detail,
        }
        for e in page.entries
    ]
    return {"items": items, "next": str(page.next) if page.next is not None else None}


def keys_status(service: Service) -> list[Document]:
    """Expiry of certificates and metadata (nothing when the keys are elsewhere)."""
    from livepatch.trust import admin
    from livepatch.trust.keys import KeyDirectory

    directory = service.config.keys_dir
    if not directory.is_dir():
        return []
    lines = admin.status(KeyDirectory(directory), service.config.metadata_dir, service.clock())
    return [line.document() for line in lines]
