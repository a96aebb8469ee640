"""The livepatch fields a TUF target carries (``custom["livepatch"]``), as typed data.

Schema (see docs/CONTRACTS.md)::

    {"patch_id": str, "version": str, "kernels": [str, ...], "module_name": str,
     "cumulative": bool, "severity": str, "description": str,
     "cves": [{"id": str, "severity": str, "description": str}, ...],
     "rollout": {"stage": str, "percentage": float, "halted": bool}}

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
    )


def rejected(error: InvalidPatchFields) -> MetadataRejected:
    return MetadataRejected(
        f"The signed metadata has an invalid patch entry ({error}); ask the service "
        "administrator to re-publish it."
    )
