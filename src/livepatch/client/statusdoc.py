"""The status document from the state's JSON form (docs/CONTRACTS.md "Status document").

One builder for both ways `livepatch status` answers: the full path passes
``state.to_json(reconciled_state)``, the fast path (``quickstatus``) the
state file's own content when reconciling would change nothing. Standard
library only, and none of it imported: this module is on the fast path.
"""

from livepatch import __version__

TYPE_CHECKING = False  # typing costs ~10 ms; annotations only (see livepatch.cli)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any


def iso(stamp: str | None) -> str | None:
    """A stored ISO 8601 time as the document shows it (UTC as ``Z``)."""
    return stamp.replace("+00:00", "Z") if stamp else None


def fixes(record: "Mapping[str, Any]") -> "list[dict[str, Any]]":
    """Every fix known for the running kernel: applied ones patched, the rest not."""
    applied = record["applied"]["fixes"] if record["applied"] else []
    patched = {fix["name"] for fix in applied}
    known = list(applied)
    if record["available"] is not None:
        known += [fix for fix in record["available"]["fixes"] if fix["name"] not in patched]
    return [
        {
            "Name": fix["name"],
            "Description": fix["description"],
            "Bug": "",
            "Patched": fix["name"] in patched,
            "Severity": fix["severity"],
        }
        for fix in known
    ]


def document(
    record: "Mapping[str, Any]",
    *,
    kernel_key: str,
    architecture: str,
    cpu_model: str,
    boot_time: str | None,
    uptime: int,
    tier: str,
    daemon_running: bool,
) -> "dict[str, Any]":
    """The status document for the state `record` (``state.to_json``), already
    reconciled with the running kernel; `boot_time` is ISO 8601 with ``Z``."""
    enrolment = record["enrolment"]
    applied = record["applied"]
    return {
        "Client-Version": __version__,
        "Machine-Id": enrolment["machine_id"] if enrolment else "",
        "Architecture": architecture,
        "CPU-Model": cpu_model,
        "Boot-Time": boot_time,
        "Uptime": uptime,
        "Last-Check": iso(record["last_check"]),
        "Next-Check": iso(record["next_check"]) if enrolment else None,
        "tier": tier if enrolment else "",
        "Enrolled": enrolment is not None,
        "Daemon-Running": daemon_running,
        "Status": [
            {
                "Kernel": kernel_key,
                "Running": True,
                "Supported": record["supported"],
                "UpgradeRequiredDate": None,
                "Livepatch": {
                    "CheckState": record["check_state"],
                    "State": record["patch_state"],
                    "Version": applied["version"] if applied else "",
                    "Fixes": fixes(record),
                },
            }
        ],
        "Applied-Patches": [applied["patch_id"]] if applied else [],
        "Errors": [{"code": e["code"], "message": e["message"]} for e in record["errors"]],
        "Health": health(record),
        "Crash": crash(record),
        "Revoked": revoked(record),
    }


def health(record: "Mapping[str, Any]") -> "dict[str, Any] | None":
    """The verdict on the last patch applied: watching, healthy or unhealthy."""
    found = record.get("health")
    if found is None:
        return None
    watch = record.get("watch")
    return {
        "Patch": found["patch_id"],
        "Verdict": found["verdict"],
        "Evidence": found.get("evidence", ""),
        "Until": iso(watch["until"]) if watch else None,
    }


def crash(record: "Mapping[str, Any]") -> "dict[str, Any] | None":
    found = record.get("crashed")
    if found is None:
        return None
    patch = found["patch_id"]
    return {
        "Patch": patch,
        "Version": found["version"],
        "At": iso(found["at"]),
        "Message": (
            f"The machine crashed or was reset while patch {patch} was being applied; "
            "it will not be loaded again until an administrator runs `livepatch clear-crash`."
        ),
    }


def revoked(record: "Mapping[str, Any]") -> "dict[str, Any] | None":
    found = record.get("revoked")
    if found is None:
        return None
    patch, reason, replaced_by = found["patch_id"], found["reason"], found.get("replaced_by", "")
    because = f" ({reason})" if reason else ""
    then = f"went back to patch {replaced_by}" if replaced_by else "removed it from the kernel"
    return {
        "Patch": patch,
        "Reason": reason,
        "Replaced-By": replaced_by or None,
        "Message": f"Patch {patch} was revoked by the service{because}; this machine {then}.",
    }
