"""The status document (docs/CONTRACTS.md "Status document", COMPAT.md).

A superset of ``canonical-livepatch status --format json``: the same field
names and value sets where the meaning is the same, because Ubuntu Pro and
Landscape parse them. Built from plain values only; the caller gathers them.
The schema is interfaces/status.schema.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from livepatch import __version__
from livepatch.client.host import HostFacts
from livepatch.client.state import Fix, State


@dataclass(frozen=True)
class KernelFacts:
    release: str
    key: str
    architecture: str


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def fixes(state: State) -> list[dict[str, Any]]:
    """Every fix known for the running kernel: applied ones patched, the rest not."""
    applied = state.applied.fixes if state.applied else ()
    patched = {fix.name for fix in applied}
    known: list[Fix] = list(applied)
    if state.available is not None:
        known += [fix for fix in state.available.fixes if fix.name not in patched]
    return [
        {
            "Name": fix.name,
            "Description": fix.description,
            "Bug": "",
            "Patched": fix.name in patched,
            "Severity": fix.severity,
        }
        for fix in known
    ]


def document(
    state: State,
    *,
    kernel: KernelFacts,
    host: HostFacts,
    tier: str,
    daemon_running: bool,
) -> dict[str, Any]:
    """The status document for `state`, already reconciled with the running kernel."""
    enrolment = state.enrolment
    applied = state.applied
    return {
        "Client-Version": __version__,
        "Machine-Id": enrolment.machine_id if enrolment else "",
        "Architecture": kernel.architecture,
        "CPU-Model": host.cpu_model,
        "Boot-Time": _iso(host.boot_time),
        "Uptime": host.uptime,
        "Last-Check": _iso(state.last_check),
        "Next-Check": _iso(state.next_check) if enrolment else None,
        "tier": tier if enrolment else "",
        "Enrolled": enrolment is not None,
        "Daemon-Running": daemon_running,
        "Status": [
            {
                "Kernel": kernel.key,
                "Running": True,
                "Supported": state.supported.value,
                "UpgradeRequiredDate": None,
                "Livepatch": {
                    "CheckState": state.check_state.value,
                    "State": state.patch_state.value,
                    "Version": applied.version if applied else "",
                    "Fixes": fixes(state),
                },
            }
        ],
        "Applied-Patches": [applied.patch_id] if applied else [],
        "Errors": [{"code": e.code, "message": e.message} for e in state.errors],
        "Health": health(state),
        "Crash": crash(state),
        "Revoked": revoked(state),
    }


def health(state: State) -> dict[str, Any] | None:
    """The verdict on the last patch applied: watching, healthy or unhealthy."""
    if state.health is None:
        return None
    until = state.watch.until if state.watch else None
    return {
        "Patch": state.health.patch_id,
        "Verdict": state.health.verdict,
        "Evidence": state.health.evidence,
        "Until": _iso(until),
    }


def crash(state: State) -> dict[str, Any] | None:
    found = state.crashed
    if found is None:
        return None
    return {
        "Patch": found.patch_id,
        "Version": found.version,
        "At": _iso(found.at),
        "Message": (
            f"The machine crashed or was reset while patch {found.patch_id} was being applied; "
            "it will not be loaded again until an administrator runs `livepatch clear-crash`."
        ),
    }


def revoked(state: State) -> dict[str, Any] | None:
    found = state.revoked
    if found is None:
        return None
    reason = f" ({found.reason})" if found.reason else ""
    then = (
        f"went back to patch {found.replaced_by}"
        if found.replaced_by
        else "removed it from the kernel"
    )
    return {
        "Patch": found.patch_id,
        "Reason": found.reason,
        "Replaced-By": found.replaced_by or None,
        "Message": (
            f"Patch {found.patch_id} was revoked by the service{reason}; this machine {then}."
        ),
    }
