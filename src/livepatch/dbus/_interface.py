"""The exported interface `io.livepatch.Livepatch1`, as a dbus-fast ServiceInterface.

Member names are the D-Bus names (CamelCase). Its introspection must equal
interfaces/io.livepatch.Livepatch1.xml, which a test checks on a live bus.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

from dbus_fast import DBusError, ErrorType, PropertyAccess
from dbus_fast import introspection as intr
from dbus_fast.annotations import DBusBool, DBusSignature, DBusStr
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property, dbus_signal

from livepatch.dbus import INTERFACE
from livepatch.dbus.properties import BusProperties

StrList = Annotated[list[str], DBusSignature("as")]
FixList = Annotated[list[list[Any]], DBusSignature("a(ssb)")]
ErrorList = Annotated[list[list[str]], DBusSignature("a(ss)")]
PatchAppliedArgs = Annotated[tuple[str, list[str]], DBusSignature("sas")]
PatchFailedArgs = Annotated[tuple[str, str], DBusSignature("ss")]

# dbus-fast names method inputs after the Python parameters; outputs and
# signal arguments get their names here, so that tools (busctl, d-spy) show them.
OUT_ARG_NAMES: dict[str, tuple[str, ...]] = {
    "Status": ("status",),
    "Refresh": ("status",),
    "PatchApplied": ("patch", "cves"),
    "PatchFailed": ("patch", "reason"),
}

REFRESH_UNROUTED = (
    "Refresh could not identify its caller; ask the administrator to check the daemon's log."
)


class LivepatchInterface(ServiceInterface):
    """Read-only properties from the status document, Status/Refresh, two signals."""

    def __init__(self, status: Callable[[], dict[str, Any]], values: BusProperties) -> None:
        super().__init__(INTERFACE)
        self._status = status
        self.values = values

    def introspect(self) -> intr.Interface:
        interface = super().introspect()
        outputs = [(m.name, m.out_args) for m in interface.methods]
        outputs += [(s.name, s.args) for s in interface.signals]
        for member, args in outputs:
            for arg, name in zip(args, OUT_ARG_NAMES.get(member, ()), strict=True):
                arg.name = name
        return interface

    @dbus_property(access=PropertyAccess.READ)
    def State(self) -> DBusStr:
        return self.values.State

    @dbus_property(access=PropertyAccess.READ)
    def Kernel(self) -> DBusStr:
        return self.values.Kernel

    @dbus_property(access=PropertyAccess.READ)
    def Enrolled(self) -> DBusBool:
        return self.values.Enrolled

    @dbus_property(access=PropertyAccess.READ)
    def Tier(self) -> DBusStr:
        return self.values.Tier

    @dbus_property(access=PropertyAccess.READ)
    def LastCheck(self) -> DBusStr:
        return self.values.LastCheck

    @dbus_property(access=PropertyAccess.READ)
    def NextCheck(self) -> DBusStr:
        return self.values.NextCheck

    @dbus_property(access=PropertyAccess.READ)
    def AppliedPatches(self) -> StrList:
        return list(self.values.AppliedPatches)

    @dbus_property(access=PropertyAccess.READ)
    def Fixes(self) -> FixList:
        return [list(fix) for fix in self.values.Fixes]

    @dbus_property(access=PropertyAccess.READ)
    def Errors(self) -> ErrorList:
        return [list(error) for error in self.values.Errors]

    @dbus_method()
    def Status(self) -> DBusStr:
        return json.dumps(self._status())

    @dbus_method()
    def Refresh(self) -> DBusStr:
        # Calls are answered by the service's message handler, which knows the
        # caller; reaching this body means that handler did not run: refuse.
        raise DBusError(ErrorType.ACCESS_DENIED, REFRESH_UNROUTED)

    @dbus_signal()
    def PatchApplied(self, patch: str, cves: list[str]) -> PatchAppliedArgs:
        return patch, cves

    @dbus_signal()
    def PatchFailed(self, patch: str, reason: str) -> PatchFailedArgs:
        return patch, reason
