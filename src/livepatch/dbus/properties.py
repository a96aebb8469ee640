"""Bus properties derived from the status document: pure functions, no D-Bus.

The status document (docs/CONTRACTS.md, "Status document") comes from the daemon;
it is parsed defensively: a missing key or a value of the wrong type gives
the property's empty value instead of an error, so one bad field never takes
the whole service down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

# D-Bus property name -> signature; the order of the introspection XML.
SIGNATURES: dict[str, str] = {
    "State": "s",
    "Kernel": "s",
    "Enrolled": "b",
    "Tier": "s",
    "LastCheck": "s",
    "NextCheck": "s",
    "AppliedPatches": "as",
    "Fixes": "a(ssb)",
    "Errors": "a(ss)",
}

NOT_ENROLLED = "disabled"


@dataclass(frozen=True)
class BusProperties:
    """The values of the interface's read-only properties."""

    State: str = ""
    Kernel: str = ""
    Enrolled: bool = False
    Tier: str = ""
    LastCheck: str = ""
    NextCheck: str = ""
    AppliedPatches: tuple[str, ...] = ()
    Fixes: tuple[tuple[str, str, bool], ...] = ()
    Errors: tuple[tuple[str, str], ...] = ()

    def as_dbus(self) -> dict[str, Any]:
        """Values in the shapes dbus-fast marshals (lists, not tuples, for arrays)."""
        values = asdict(self)
        return {
            name: [list(item) for item in value]
            if name in ("Fixes", "Errors")
            else list(value)
            if name == "AppliedPatches"
            else value
            for name, value in values.items()
        }


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def running_entry(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    """The `Status` entry of the running kernel (the first one if none says so)."""
    entries = [_mapping(entry) for entry in _list(doc.get("Status"))]
    for entry in entries:
        if entry.get("Running") is True:
            return entry
    return entries[0] if entries else {}


def cve_id(name: str) -> str:
    """`cve-2024-1086` as the canonical `CVE-2024-1086`; other names unchanged."""
    return name.upper() if name.lower().startswith("cve-") else name


def from_document(doc: Mapping[str, Any]) -> BusProperties:
    """Derive every property from one status document."""
    entry = running_entry(doc)
    livepatch = _mapping(entry.get("Livepatch"))
    enrolled = doc.get("Enrolled") is True
    fixes = tuple(
        (cve_id(_str(fix.get("Name"))), _str(fix.get("Severity")), fix.get("Patched") is True)
        for fix in map(_mapping, _list(livepatch.get("Fixes")))
        if _str(fix.get("Name"))
    )
    errors = tuple(
        (_str(error.get("code")), _str(error.get("message")))
        for error in map(_mapping, _list(doc.get("Errors")))
    )
    return BusProperties(
        State=_str(livepatch.get("State")) if enrolled else NOT_ENROLLED,
        Kernel=_str(entry.get("Kernel")),
        Enrolled=enrolled,
        Tier=_str(doc.get("tier")),
        LastCheck=_str(doc.get("Last-Check")),
        NextCheck=_str(doc.get("Next-Check")),
        AppliedPatches=tuple(p for p in _list(doc.get("Applied-Patches")) if isinstance(p, str)),
        Fixes=fixes,
        Errors=errors,
    )


def changed(old: BusProperties, new: BusProperties) -> dict[str, Any]:
    """The properties whose value differs, in D-Bus shapes (for PropertiesChanged)."""
    before, after = old.as_dbus(), new.as_dbus()
    return {name: value for name, value in after.items() if before[name] != value}
