"""The livepatch fields a TUF target carries (``custom["livepatch"]``), as typed data.

Schema (see docs/CONTRACTS.md)::

    {"patch_id": str, "version": str, "kernels": [str, ...], "module_name": str,
     "cumulative": bool, "severity": str, "description": str,
     "cves": [{"id": str, "severity": str, "description": str}, ...],
     "rollout": {"stage": str, "percentage": float, "halted": bool},
     "revoked": {"reason": str, "at": RFC3339},                          (optional)
     "preflight": {"result": "passed"|"skipped", "kernel": str, "at": RFC3339}}  (optional)

``revoked`` marks a patch every machine must leave (fleet-wide rollback);
``preflight`` records the pre-flight run on the real kernel before publishing
(absent for patches published before pre-flight existed).

The repository validates before it signs; the client parses what verified,
so a bad field is reported by name instead of surfacing as a KeyError later.

TUF signs canonical JSON, which has no floating-point numbers, so floats
(``rollout.percentage``) are signed as decimal strings ("5.0"): ``to_signed``
encodes them, ``from_signed`` and ``parse_patch_fields`` turn them back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from livepatch.trust.errors import MetadataRejected

CUSTOM_KEY = "livepatch"
SIGNING_CERTIFICATES_TARGET = "keys/module-signing.pem"
PATCH_PREFIX = "patches/"


class InvalidPatchFields(ValueError):
    """A custom field is missing or has the wrong type (``field`` names it)."""

    def __init__(self, target: str, field: str, expected: str) -> None:
        super().__init__(f"target {target}: field '{field}' must be {expected}")
        self.field = field


@dataclass(frozen=True)
class Cve:
    id: str
    severity: str
    description: str


@dataclass(frozen=True)
class Rollout:
    stage: str
    percentage: float
    halted: bool


@dataclass(frozen=True)
class Revocation:
    """Why and when the service revoked a patch: machines must leave it."""

    reason: str
    at: datetime

    def to_fields(self) -> dict[str, str]:
        return {"reason": self.reason, "at": rfc3339(self.at)}


class PreflightResult(StrEnum):
    PASSED = "passed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Preflight:
    """The pre-flight run on the real kernel that the publisher recorded."""

    result: PreflightResult
    kernel: str
    at: datetime

    def to_fields(self) -> dict[str, str]:
        return {"result": self.result.value, "kernel": self.kernel, "at": rfc3339(self.at)}


MAX_REASON = 1024
"""Longest revocation reason the metadata carries (it reaches terminals)."""


def rfc3339(moment: datetime) -> str:
    """``moment`` in UTC as ``2026-12-05T04:57:22Z`` (seconds precision)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetimes are not signed; use UTC-aware ones")
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> datetime:
    """A UTC-aware datetime from an RFC 3339 timestamp with a zone; ValueError otherwise."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class PatchTarget:
    """A patch the signed metadata offers: where it is, how big, for which kernels."""

    name: str
    length: int
    hashes: Mapping[str, str]
    patch_id: str
    version: str
    kernels: tuple[str, ...]
    module_name: str
    cumulative: bool
    severity: str
    description: str
    cves: tuple[Cve, ...]
    rollout: Rollout
    custom: Mapping[str, Any]
    revoked: Revocation | None = None
    preflight: Preflight | None = None


def to_signed(value: Any) -> Any:
    """``value`` with every float written as a decimal string (canonical JSON has none)."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return {k: to_signed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_signed(v) for v in value]
    return value


def from_signed(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The livepatch fields as the service handles them (percentage back to a float)."""
    result = dict(fields)
    rollout = result.get("rollout")
    if isinstance(rollout, dict) and isinstance(rollout.get("percentage"), str):
        with contextlib.suppress(ValueError):
            result["rollout"] = {**rollout, "percentage": float(rollout["percentage"])}
    return result


def _get(fields: Mapping[str, Any], target: str, key: str, kind: type, expected: str) -> Any:
    value = fields.get(key)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise InvalidPatchFields(target, key, expected)
    return value


def _strings(fields: Mapping[str, Any], target: str, key: str) -> tuple[str, ...]:
    value = fields.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidPatchFields(target, key, "a list of strings")
    return tuple(value)


def _printable(text: str) -> bool:
    return not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text)


def _moment(fields: Mapping[str, Any], target: str, key: str) -> datetime:
    value = fields.get("at")
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return parse_rfc3339(value)
    raise InvalidPatchFields(target, f"{key}.at", "an RFC 3339 time with a zone")


def parse_revoked(target: str, value: Any) -> Revocation | None:
    """The optional ``revoked`` object; raises InvalidPatchFields."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidPatchFields(target, "revoked", "an object")
    reason = value.get("reason")
    if not isinstance(reason, str) or len(reason) > MAX_REASON or not _printable(reason):
        raise InvalidPatchFields(
            target, "revoked.reason", f"a string of at most {MAX_REASON} printable characters"
        )
    return Revocation(reason=reason, at=_moment(value, target, "revoked"))


def parse_preflight(target: str, value: Any) -> Preflight | None:
    """The optional ``preflight`` object; raises InvalidPatchFields."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidPatchFields(target, "preflight", "an object")
    try:
        result = PreflightResult(str(value.get("result")))
    except ValueError:
        raise InvalidPatchFields(target, "preflight.result", "'passed' or 'skipped'") from None
    kernel = value.get("kernel")
    if not isinstance(kernel, str) or not 0 < len(kernel) <= 255 or not _printable(kernel):
        raise InvalidPatchFields(target, "preflight.kernel", "a kernel key")
    return Preflight(result=result, kernel=kernel, at=_moment(value, target, "preflight"))


def parse_patch_fields(
    name: str, length: int, hashes: Mapping[str, str], custom: Any
) -> PatchTarget:
    """Typed patch fields of target ``name``; raises InvalidPatchFields."""
    fields = custom.get(CUSTOM_KEY) if isinstance(custom, dict) else None
    if not isinstance(fields, dict):
        raise InvalidPatchFields(name, CUSTOM_KEY, "an object")
    cves = []
    raw_cves = fields.get("cves")
    if not isinstance(raw_cves, list):
        raise InvalidPatchFields(name, "cves", "a list")
    for index, raw in enumerate(raw_cves):
        if not isinstance(raw, dict):
            raise InvalidPatchFields(name, f"cves[{index}]", "an object")
        label = f"{name} cves[{index}]"
        cves.append(
            Cve(
                _get(raw, label, "id", str, "a string"),
                _get(raw, label, "severity", str, "a string"),
                str(raw.get("description", "")),
            )
        )
    fields = from_signed(fields)
    rollout = fields.get("rollout")
    if not isinstance(rollout, dict):
        raise InvalidPatchFields(name, "rollout", "an object")
    percentage = _get(rollout, name, "percentage", float, "a number")
    if not 0.0 <= percentage <= 100.0:
        raise InvalidPatchFields(name, "rollout.percentage", "between 0 and 100")
    return PatchTarget(
        name=name,
        length=length,
        hashes=dict(hashes),
        patch_id=_get(fields, name, "patch_id", str, "a string"),
        version=_get(fields, name, "version", str, "a string"),
        kernels=_strings(fields, name, "kernels"),
        module_name=_get(fields, name, "module_name", str, "a string"),
        cumulative=_get(fields, name, "cumulative", bool, "true or false"),
        severity=_get(fields, name, "severity", str, "a string"),
        description=str(fields.get("description", "")),
        cves=tuple(cves),
        rollout=Rollout(
            _get(rollout, name, "stage", str, "a string"),
            percentage,
            _get(rollout, name, "halted", bool, "true or false"),
        ),
        custom=fields,
        revoked=parse_revoked(name, fields.get("revoked")),
        preflight=parse_preflight(name, fields.get("preflight")),
    )


def rejected(error: InvalidPatchFields) -> MetadataRejected:
    return MetadataRejected(
        f"The signed metadata has an invalid patch entry ({error}); ask the service "
        "administrator to re-publish it."
    )
