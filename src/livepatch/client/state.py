"""The client's persisted record: enrolment, last check, what is applied.

Plain frozen dataclasses plus a JSON codec. ``StateFile`` reads and writes
the document atomically (see ``store``); a document that fails to parse is
reported, never silently replaced, because it records what we loaded into the
kernel. The credential lives in its own 0600 file (``CredentialFile``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from livepatch.client.errors import CorruptState, StateNeedsRoot
from livepatch.client.store import remove_durably, write_atomic

# Shared with the patch service: the same values, from the same rule.
from livepatch.kernelsupport import Support as Support

SCHEMA_VERSION = 1


class PatchState(StrEnum):
    APPLIED = "applied"
    APPLYING = "applying"
    NOTHING_TO_APPLY = "nothing-to-apply"
    UNAPPLIED = "unapplied"
    KERNEL_UPGRADE_REQUIRED = "kernel-upgrade-required"
    APPLY_FAILED = "apply-failed"


class CheckState(StrEnum):
    CHECKED = "checked"
    NEEDS_CHECK = "needs-check"
    CHECK_FAILED = "check-failed"


@dataclass(frozen=True)
class Fix:
    name: str
    """Lower-case CVE id, e.g. ``cve-2024-1086`` (canonical-livepatch's form)."""
    severity: str = ""
    description: str = ""


@dataclass(frozen=True)
class PatchRecord:
    """A patch as the client remembers it."""

    patch_id: str
    version: str
    module_name: str
    kernel: str
    fixes: tuple[Fix, ...] = ()


@dataclass(frozen=True)
class ErrorRecord:
    code: str
    message: str


@dataclass(frozen=True)
class Report:
    """An outcome waiting to be sent to the service (kept until it is)."""

    patch_id: str
    kernel: str
    result: str
    errno: int | None = None
    reason: str | None = None
    duration_ms: int = 0
    taint: int = 0
    health: str | None = None
    """``healthy`` or ``unhealthy`` once the health window passed; None before."""
    evidence: str | None = None
    """Why unhealthy: a kernel-log excerpt and taint letters (at most 1024 characters)."""


@dataclass(frozen=True)
class HealthWatch:
    """A patch just applied, watched until `until`: what the kernel looked like before."""

    patch_id: str
    module_name: str
    until: datetime
    taint: int
    """The taint value before the load."""
    log_seq: int
    """The last kernel-log record before the load (-1: none, or the log was unreadable)."""
    functions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Health:
    """The verdict on the last patch applied: ``watching``, ``healthy`` or ``unhealthy``."""

    patch_id: str
    verdict: str
    evidence: str = ""


@dataclass(frozen=True)
class Crash:
    """A patch being applied when the machine crashed or was reset: never loaded again
    until an administrator clears it (`livepatch clear-crash`)."""

    patch_id: str
    version: str
    module_name: str
    boot_id: str
    at: datetime


@dataclass(frozen=True)
class Revoked:
    """The service revoked a patch this machine had loaded; we left it."""

    patch_id: str
    version: str
    reason: str
    replaced_by: str = ""
    """The patch id we went back to; empty when the patch was removed."""


@dataclass(frozen=True)
class Enrolment:
    machine_id: str
    tier: str
    server: str
    enrolled_at: datetime
    kernel: str | None = None
    """The kernel key the service has on record for this machine (enrolled with, or told
    since); None in state written before it was kept: not known."""


@dataclass(frozen=True)
class State:
    enrolment: Enrolment | None = None
    kernel: str | None = None
    """The kernel key the patch fields below describe."""
    supported: Support = Support.UNKNOWN
    check_state: CheckState = CheckState.NEEDS_CHECK
    last_check: datetime | None = None
    next_check: datetime | None = None
    failures: int = 0
    """Consecutive retryable failed checks (drives backoff, see ``transitions.check_failed``)."""
    patch_state: PatchState = PatchState.UNAPPLIED
    applied: PatchRecord | None = None
    """Our patch that the kernel has loaded and enabled."""
    applying: PatchRecord | None = None
    """A patch handed to the kernel whose outcome is not recorded yet."""
    available: PatchRecord | None = None
    """The newest patch for this kernel that admits this machine."""
    errors: tuple[ErrorRecord, ...] = ()
    pending_reports: tuple[Report, ...] = field(default=())
    watch: HealthWatch | None = None
    health: Health | None = None
    crashed: Crash | None = None
    revoked: Revoked | None = None


@dataclass(frozen=True)
class Credential:
    token: str
    expires: datetime
    issued: datetime | None = None
    """When we received it; with `expires` this gives the lifetime renewal is based on."""

    def __repr__(self) -> str:
        return f"Credential(expires={self.expires.isoformat()})"


def _time(value: object) -> datetime | None:
    return datetime.fromisoformat(str(value)) if value else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _fix(data: Mapping[str, Any]) -> Fix:
    return Fix(str(data["name"]), str(data.get("severity", "")), str(data.get("description", "")))


def _record(data: Mapping[str, Any] | None) -> PatchRecord | None:
    if data is None:
        return None
    return PatchRecord(
        patch_id=str(data["patch_id"]),
        version=str(data["version"]),
        module_name=str(data["module_name"]),
        kernel=str(data["kernel"]),
        fixes=tuple(_fix(item) for item in data.get("fixes", [])),
    )


def _record_json(record: PatchRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {
        "patch_id": record.patch_id,
        "version": record.version,
        "module_name": record.module_name,
        "kernel": record.kernel,
        "fixes": [
            {"name": f.name, "severity": f.severity, "description": f.description}
            for f in record.fixes
        ],
    }


def _watch_json(watch: HealthWatch | None) -> dict[str, Any] | None:
    if watch is None:
        return None
    return {
        "patch_id": watch.patch_id,
        "module_name": watch.module_name,
        "until": watch.until.isoformat(),
        "taint": watch.taint,
        "log_seq": watch.log_seq,
        "functions": list(watch.functions),
    }


def _watch(data: Mapping[str, Any] | None) -> HealthWatch | None:
    if data is None:
        return None
    return HealthWatch(
        patch_id=str(data["patch_id"]),
        module_name=str(data["module_name"]),
        until=datetime.fromisoformat(data["until"]),
        taint=int(data["taint"]),
        log_seq=int(data["log_seq"]),
        functions=tuple(str(name) for name in data.get("functions", [])),
    )


def _crash_json(crash: Crash | None) -> dict[str, Any] | None:
    if crash is None:
        return None
    return {**vars(crash), "at": crash.at.isoformat()}


def _crash(data: Mapping[str, Any] | None) -> Crash | None:
    if data is None:
        return None
    return Crash(
        patch_id=str(data["patch_id"]),
        version=str(data["version"]),
        module_name=str(data["module_name"]),
        boot_id=str(data["boot_id"]),
        at=datetime.fromisoformat(data["at"]),
    )


def to_json(state: State) -> dict[str, Any]:
    enrolment = state.enrolment
    return {
        "version": SCHEMA_VERSION,
        "enrolment": None
        if enrolment is None
        else {
            "machine_id": enrolment.machine_id,
            "tier": enrolment.tier,
            "server": enrolment.server,
            "enrolled_at": enrolment.enrolled_at.isoformat(),
            "kernel": enrolment.kernel,
        },
        "kernel": state.kernel,
        "supported": state.supported.value,
        "check_state": state.check_state.value,
        "last_check": _iso(state.last_check),
        "next_check": _iso(state.next_check),
        "failures": state.failures,
        "patch_state": state.patch_state.value,
        "applied": _record_json(state.applied),
        "applying": _record_json(state.applying),
        "available": _record_json(state.available),
        "errors": [{"code": e.code, "message": e.message} for e in state.errors],
        "pending_reports": [vars(report) for report in state.pending_reports],
        "watch": _watch_json(state.watch),
        "health": None if state.health is None else vars(state.health),
        "crashed": _crash_json(state.crashed),
        "revoked": None if state.revoked is None else vars(state.revoked),
    }


def from_json(data: Mapping[str, Any]) -> State:
    enrolment = data.get("enrolment")
    return State(
        enrolment=None
        if enrolment is None
        else Enrolment(
            machine_id=str(enrolment["machine_id"]),
            tier=str(enrolment["tier"]),
            server=str(enrolment["server"]),
            enrolled_at=datetime.fromisoformat(enrolment["enrolled_at"]),
            kernel=enrolment.get("kernel"),
        ),
        kernel=data.get("kernel"),
        supported=Support(data.get("supported", Support.UNKNOWN)),
        check_state=CheckState(data.get("check_state", CheckState.NEEDS_CHECK)),
        last_check=_time(data.get("last_check")),
        next_check=_time(data.get("next_check")),
        failures=int(data.get("failures", 0)),
        patch_state=PatchState(data.get("patch_state", PatchState.UNAPPLIED)),
        applied=_record(data.get("applied")),
        applying=_record(data.get("applying")),
        available=_record(data.get("available")),
        errors=tuple(ErrorRecord(str(e["code"]), str(e["message"])) for e in data["errors"]),
        pending_reports=tuple(Report(**report) for report in data.get("pending_reports", [])),
        watch=_watch(data.get("watch")),
        health=None if data.get("health") is None else Health(**data["health"]),
        crashed=_crash(data.get("crashed")),
        revoked=None if data.get("revoked") is None else Revoked(**data["revoked"]),
    )


class StateFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> State:
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return State()
        except PermissionError as error:  # an ordinary user, and a private state directory
            raise StateNeedsRoot(str(self.path.parent)) from error
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            return from_json(data)
        except (ValueError, TypeError, KeyError) as error:
            raise CorruptState(str(self.path), str(error) or type(error).__name__) from error

    def save(self, state: State) -> None:
        data = json.dumps(to_json(state), indent=2, sort_keys=True).encode() + b"\n"
        write_atomic(self.path, data, mode=0o644)


class CredentialFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Credential | None:
        try:
            data = json.loads(self.path.read_bytes())
            return Credential(
                str(data["credential"]),
                datetime.fromisoformat(data["expires"]),
                _time(data.get("issued")),
            )
        except FileNotFoundError:
            return None
        except (ValueError, TypeError, KeyError) as error:
            raise CorruptState(str(self.path), type(error).__name__) from error

    def save(self, credential: Credential) -> None:
        data = {
            "credential": credential.token,
            "expires": credential.expires.isoformat(),
            "issued": _iso(credential.issued),
        }
        write_atomic(self.path, json.dumps(data).encode(), mode=0o600)

    def remove(self) -> None:
        remove_durably(self.path)
