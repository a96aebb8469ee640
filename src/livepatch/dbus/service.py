"""The daemon's system-bus service: `io.livepatch.Livepatch1` at `/io/livepatch/Livepatch1`.

The daemon owns the status document; this service only publishes it:
properties derived from it (``livepatch.dbus.properties``), PropertiesChanged
for the ones that change, and the PatchApplied / PatchFailed signals.

Refresh runs a check now and is for root only. dbus-fast does not hand the
calling message to a method, so Refresh calls are answered by a message
handler that asks the bus for the caller's uid (GetConnectionUnixUser) first.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from dbus_fast import BusType, DBusError, ErrorType, Message, MessageFlag, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.constants import NameFlag, RequestNameReply

from livepatch.dbus import BUS_NAME, INTERFACE, OBJECT_PATH
from livepatch.dbus._interface import LivepatchInterface
from livepatch.dbus.properties import changed, cve_id, from_document
from livepatch.errors import LivepatchError

log = logging.getLogger(__name__)

Document = dict[str, Any]
REFRESH_FAILED = f"{INTERFACE}.Error.RefreshFailed"
ROOT_ONLY = "Only root may ask livepatch to check for patches now; run the command with sudo."


class BusServiceError(LivepatchError):
    code = "dbus-unavailable"


class LivepatchBusService:
    """Publishes the status document on a bus; see docs/CONTRACTS.md for the daemon's side.

    `status` is called once here (initial property values) and on each Status().
    """

    def __init__(
        self,
        status: Callable[[], Document],
        refresh: Callable[[], Awaitable[Document]],
    ) -> None:
        self._refresh = refresh
        self._interface = LivepatchInterface(status, from_document(status()))
        self._bus: MessageBus | None = None
        self._calls: set[asyncio.Task[None]] = set()

    async def start(self, bus_address: str | None = None) -> None:
        """Connect (None: the system bus), export the object and own the name."""
        where = bus_address or "the system bus"
        try:
            bus = await MessageBus(bus_address=bus_address, bus_type=BusType.SYSTEM).connect()
        except (OSError, DBusError) as error:
            raise BusServiceError(
                f"Could not connect to {where} ({error}); check that dbus is running."
            ) from error
        bus.add_message_handler(self._route_refresh)
        bus.export(OBJECT_PATH, self._interface)
        try:
            reply = await bus.request_name(BUS_NAME, NameFlag.DO_NOT_QUEUE)
        except DBusError as error:
            bus.disconnect()
            raise BusServiceError(
                f"The bus refused the name {BUS_NAME} ({error}); run the daemon as root "
                "with the livepatch D-Bus policy installed."
            ) from error
        if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
            bus.disconnect()
            raise BusServiceError(
                f"Another process owns {BUS_NAME} on {where}; stop the other livepatch daemon."
            )
        self._bus = bus

    def status_changed(self, doc: Document) -> None:
        """Recompute the properties and announce the ones that changed."""
        new = from_document(doc)
        difference = changed(self._interface.values, new)
        self._interface.values = new
        if difference and self._bus is not None:
            self._interface.emit_properties_changed(difference)

    def patch_applied(self, patch_id: str, cves: list[str]) -> None:
        """Signal PatchApplied, CVE ids spelt as in the Fixes property (CVE-2024-1086)."""
        self._interface.PatchApplied(patch_id, [cve_id(cve) for cve in cves])

    def patch_failed(self, patch_id: str, reason: str) -> None:
        self._interface.PatchFailed(patch_id, reason)

    async def stop(self) -> None:
        """Release the name and disconnect; pending Refresh calls are cancelled."""
        for task in list(self._calls):
            task.cancel()
        await asyncio.gather(*self._calls, return_exceptions=True)
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.disconnect()
            await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]

    def _route_refresh(self, msg: Message) -> bool:
        if not (
            msg.message_type is MessageType.METHOD_CALL
            and msg.path == OBJECT_PATH
            and msg.interface in (INTERFACE, None)
            and msg.member == "Refresh"
            and msg.signature == ""
        ):
            return False
        task = asyncio.ensure_future(self._answer_refresh(msg))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)
        return True

    async def _answer_refresh(self, msg: Message) -> None:
        bus = self._bus
        if bus is None:
            return
        reply = await self._refresh_reply(bus, msg)
        if not msg.flags & MessageFlag.NO_REPLY_EXPECTED:
            bus.send(reply)

    async def _refresh_reply(self, bus: MessageBus, msg: Message) -> Message:
        uid = await caller_uid(bus, msg.sender)
        if uid != 0:
            log.info("refused Refresh from %s (uid %s)", msg.sender, uid)
            return Message.new_error(msg, ErrorType.ACCESS_DENIED, ROOT_ONLY)
        try:
            doc = await self._refresh()
        except LivepatchError as error:
            return Message.new_error(msg, REFRESH_FAILED, str(error))
        except Exception:
            log.exception("Refresh failed")
            return Message.new_error(
                msg, REFRESH_FAILED, "The check for patches failed; see the daemon's log."
            )
        return Message.new_method_return(msg, "s", [json.dumps(doc)])


async def caller_uid(bus: MessageBus, sender: str | None) -> int | None:
    """The unix uid of a bus connection, or None when the bus cannot say."""
    if not sender:
        return None
    reply = await bus.call(
        Message(
            destination="org.freedesktop.DBus",
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus",
            member="GetConnectionUnixUser",
            signature="s",
            body=[sender],
        )
    )
    if reply is None or reply.message_type is not MessageType.METHOD_RETURN:
        return None
    uid = reply.body[0]
    return uid if isinstance(uid, int) else None
