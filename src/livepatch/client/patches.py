"""What the signed metadata says about one patch, parsed into typed records.

The fields come from the target's ``custom["livepatch"]`` object (docs/CONTRACTS.md).
The metadata is verified before we get here, but a malformed field must still
fail with a message naming it rather than with a KeyError deep in the planner.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from livepatch.client.errors import MetadataRejected
from livepatch.rollout import RolloutState, Stage


@dataclass(frozen=True)
class Cve:
    id: str
    severity: str = ""
    description: str = ""


@dataclass(frozen=True)
class Revocation:
    """The service withdrew a patch after it reached machines: go back from it."""

    reason: str
    at: str


@dataclass(frozen=True)
class PatchInfo:
    target: str
    """The TUF target name, ``patches/<patch_id>.ko``."""
    patch_id: str
    version: str
    kernels: tuple[str, ...]
    module_name: str
    cumulative: bool
    severity: str
    description: str
    cves: tuple[Cve, ...]
    rollout: RolloutState
    revoked: Revocation | None = None
    preflight: str | None = None
    """``passed`` or ``skipped`` when the service recorded a pre-flight; None before."""


def parse_patch(target: str, custom: Mapping[str, object]) -> PatchInfo:
    """Build a PatchInfo from a target's custom object; MetadataRejected names the bad field."""
    fields = custom.get("livepatch", custom)
    if not isinstance(fields, Mapping):
        raise _bad(target, "livepatch", "an object")
    rollout = fields.get("rollout")
    if not isinstance(rollout, Mapping):
        raise _bad(target, "rollout", "an object")
    cves = fields.get("cves", [])
    if not isinstance(cves, list) or not all(isinstance(item, Mapping) for item in cves):
        raise _bad(target, "cves", "a list of objects")
    kernels = fields.get("kernels")
    if not isinstance(kernels, list) or not all(isinstance(k, str) for k in kernels):
        raise _bad(target, "kernels", "a list of strings")
    try:
        stage = Stage(_text(target, rollout, "stage"))
    except ValueError as error:
        raise _bad(target, "rollout.stage", "canary, moderate or all") from error
    percentage = rollout.get("percentage", 0.0)
    if isinstance(percentage, bool) or not isinstance(percentage, int | float):
        raise _bad(target, "rollout.percentage", "a number")
    halted = rollout.get("halted", False)
    if not isinstance(halted, bool):
        raise _bad(target, "rollout.halted", "true or false")
    cumulative = fields.get("cumulative", True)
    if not isinstance(cumulative, bool):
        raise _bad(target, "cumulative", "true or false")
    return PatchInfo(
        target=target,
        patch_id=_text(target, fields, "patch_id"),
        version=_text(target, fields, "version"),
        kernels=tuple(kernels),
        module_name=_text(target, fields, "module_name"),
        cumulative=cumulative,
        severity=_text(target, fields, "severity", ""),
        description=_text(target, fields, "description", ""),
        cves=tuple(
            Cve(
                id=_text(target, item, "id"),
                severity=_text(target, item, "severity", ""),
                description=_text(target, item, "description", ""),
            )
            for item in cves
        ),
        rollout=RolloutState(stage=stage, percentage=float(percentage), halted=halted),
        revoked=_revocation(target, fields.get("revoked")),
        preflight=_preflight(target, fields.get("preflight")),
    )


def _revocation(target: str, value: object) -> Revocation | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _bad(target, "revoked", "an object")
    return Revocation(_text(target, value, "reason", ""), _text(target, value, "at", ""))


def _preflight(target: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _bad(target, "preflight", "an object")
    return _text(target, value, "result", "")


def _text(target: str, fields: Mapping[str, object], name: str, default: str | None = None) -> str:
    value = fields.get(name, default)
    if not isinstance(value, str) or (default is None and not value):
        raise _bad(target, name, "a non-empty string" if default is None else "a string")
    return value


def _bad(target: str, field: str, expected: str) -> MetadataRejected:
    return MetadataRejected(
        f"The metadata for {target} is malformed: {field} must be {expected}; "
        "ask the service administrator to republish it."
    )


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Order versions like ``3`` < ``10`` < ``10.1``: numbers by value, words by text."""
    parts = re.findall(r"\d+|[^\d.\-+_]+", version)
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in parts)
