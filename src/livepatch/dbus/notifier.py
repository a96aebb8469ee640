"""The per-user notifier agent: system-bus signals in, desktop notifications out.

It listens for PatchApplied / PatchFailed from the livepatch service (only
from the connection that owns io.livepatch.Livepatch1, so another local
user cannot forge them), waits COALESCE seconds for a burst to end, and posts
one org.freedesktop.Notifications.Notify on the session bus. Severity comes
from the service's Fixes property. Shown events are remembered in
$XDG_STATE_HOME/livepatch/notified.json. When no notification server (or
bus) answers, it keeps the events, says so once, and retries later.

Run as `livepatch notifier` or `python -m livepatch.dbus.notifier`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusFastError

from livepatch.cli_support import configure_logging, run
from livepatch.dbus import BUS_NAME, INTERFACE, OBJECT_PATH
from livepatch.dbus.notifications import (
    Applied,
    Event,
    Failed,
    Notification,
    NotifiedStore,
    compose,
    state_path,
)
from livepatch.dbus.properties import cve_id

log = logging.getLogger(__name__)

SYSTEM_BUS_ENV = "LIVEPATCH_SYSTEM_BUS_ADDRESS"
APP_NAME = "Livepatch"
DESKTOP_ENTRY = "livepatch-notifier"
DEFAULT_ICON = "security-high"
SIGNAL_SIGNATURES = {"PatchApplied": "sas", "PatchFailed": "ss"}
BUS_ERRORS = (OSError, DBusFastError, EOFError)


@dataclass(frozen=True)
class Options:
    system_bus: str | None = None
    session_bus: str | None = None
    coalesce: float = 2.0
    retry: float = 60.0
    icon: str = DEFAULT_ICON


def _bus_message(member: str, signature: str = "", body: list[Any] | None = None) -> Message:
    return Message(
        destination="org.freedesktop.DBus",
        path="/org/freedesktop/DBus",
        interface="org.freedesktop.DBus",
        member=member,
        signature=signature,
        body=body or [],
    )


async def _call(bus: MessageBus, msg: Message) -> list[Any] | None:
    """The reply's body, or None when the call failed."""
    reply = await bus.call(msg)
    if reply is None or reply.message_type is not MessageType.METHOD_RETURN:
        return None
    return list(reply.body)


def event_of(msg: Message) -> Event | None:
    """The event a service signal carries, None for any other message."""
    if (
        msg.message_type is not MessageType.SIGNAL
        or msg.path != OBJECT_PATH
        or msg.interface != INTERFACE
        or SIGNAL_SIGNATURES.get(msg.member or "") != msg.signature
    ):
        return None
    if msg.member == "PatchApplied":
        return Applied(msg.body[0], tuple(cve_id(cve) for cve in msg.body[1]))
    return Failed(msg.body[0], msg.body[1])


class _Quiet:
    """Logs a problem once per streak, not on every retry."""

    def __init__(self, problem: str, recovered: str) -> None:
        self.problem = problem
        self.recovered = recovered
        self.failing = False

    def failed(self, error: object) -> None:
        if not self.failing:
            log.warning("%s (%s); will retry quietly.", self.problem, error)
        self.failing = True

    def ok(self) -> None:
        if self.failing:
            log.warning("%s", self.recovered)
        self.failing = False


class Notifier:
    """The agent: `run()` until cancelled."""

    def __init__(self, options: Options, store: NotifiedStore) -> None:
        self.options = options
        self.store = store
        self.pending: list[Event] = []
        self._system: MessageBus | None = None
        self._session: MessageBus | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._system_quiet = _Quiet(
            "The livepatch service's bus is not reachable", "Listening to livepatch again."
        )
        self._session_quiet = _Quiet(
            "No notification server answers on the session bus",
            "A notification server answers again.",
        )

    async def run(self) -> None:
        """Listen on the system bus, reconnecting after failures."""
        try:
            while True:
                try:
                    await self._listen()
                except BUS_ERRORS as error:
                    self._system_quiet.failed(error)
                await asyncio.sleep(self.options.retry)
        finally:
            for bus in (self._system, self._session):
                if bus is not None and bus.connected:
                    bus.disconnect()

    async def _listen(self) -> None:
        bus = await MessageBus(
            bus_address=self.options.system_bus, bus_type=BusType.SYSTEM
        ).connect()
        self._system = bus
        bus.add_message_handler(self._on_message)
        rule = f"type='signal',sender='{BUS_NAME}',interface='{INTERFACE}',path='{OBJECT_PATH}'"
        if await _call(bus, _bus_message("AddMatch", "s", [rule])) is None:
            bus.disconnect()
            raise OSError("the bus refused to deliver the livepatch signals")
        self._system_quiet.ok()
        log.info(
            "listening for livepatch signals on %s", self.options.system_bus or "the system bus"
        )
        await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]
        raise OSError("the bus connection closed")

    def _on_message(self, msg: Message) -> bool:
        event = event_of(msg)
        if event is not None:
            task = asyncio.ensure_future(self._accept(event, msg.sender))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return False

    async def _accept(self, event: Event, sender: str | None) -> None:
        bus = self._system
        if bus is None:
            return
        try:
            owner = await _call(bus, _bus_message("GetNameOwner", "s", [BUS_NAME]))
        except BUS_ERRORS as error:
            self._system_quiet.failed(error)
            return
        if owner is None or owner[0] != sender:
            log.warning(
                "ignored a livepatch signal from %s, which does not own %s", sender, BUS_NAME
            )
            return
        self.add(event)

    def add(self, event: Event) -> None:
        """Queue an event unless it was shown or queued already."""
        if event in self.store or event in self.pending:
            return
        self.pending.append(event)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        await asyncio.sleep(self.options.coalesce)
        while self.pending:
            events = list(self.pending)
            notification = compose(events, await self._severities())
            if await self._post(notification):
                self._remember(events)
                self.pending = [e for e in self.pending if e not in events]
            else:
                await asyncio.sleep(self.options.retry)

    def _remember(self, events: list[Event]) -> None:
        try:
            self.store.add(events)
        except OSError as error:
            log.warning(
                "Could not save %s (%s); shown events may be shown again.", self.store.path, error
            )

    async def _severities(self) -> dict[str, str]:
        """CVE id -> severity from the service's Fixes property ({} if unavailable)."""
        bus = self._system
        if bus is None or not bus.connected:
            return {}
        get = Message(
            destination=BUS_NAME,
            path=OBJECT_PATH,
            interface="org.freedesktop.DBus.Properties",
            member="Get",
            signature="ss",
            body=[INTERFACE, "Fixes"],
        )
        try:
            body = await _call(bus, get)
        except BUS_ERRORS:
            return {}
        if not body or not isinstance(body[0], Variant):
            return {}
        return {str(fix[0]): str(fix[1]) for fix in body[0].value}

    async def _post(self, notification: Notification) -> bool:
        """Notify on the session bus; False (and one log line per streak) on failure."""
        try:
            if self._session is None or not self._session.connected:
                self._session = await MessageBus(
                    bus_address=self.options.session_bus, bus_type=BusType.SESSION
                ).connect()
            reply = await self._session.call(self._notify_message(notification))
        except BUS_ERRORS as error:
            self._session_quiet.failed(error)
            return False
        if reply is None or reply.message_type is not MessageType.METHOD_RETURN:
            self._session_quiet.failed(reply.error_name if reply else "no reply")
            return False
        self._session_quiet.ok()
        return True

    def _notify_message(self, notification: Notification) -> Message:
        hints = {
            "urgency": Variant("y", notification.urgency),
            "desktop-entry": Variant("s", DESKTOP_ENTRY),
        }
        return Message(
            destination="org.freedesktop.Notifications",
            path="/org/freedesktop/Notifications",
            interface="org.freedesktop.Notifications",
            member="Notify",
            signature="susssasa{sv}i",
            body=[
                APP_NAME,
                0,
                self.options.icon,
                notification.summary,
                html.escape(notification.body, quote=False),
                [],
                hints,
                -1,
            ],
        )


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="livepatch notifier",
        description="Show desktop notifications when livepatch applies kernel fixes.",
    )
    parser.add_argument(
        "--system-bus",
        default=os.environ.get(SYSTEM_BUS_ENV) or None,
        metavar="ADDRESS",
        help=f"bus of the livepatch service (default: ${SYSTEM_BUS_ENV} or the system bus)",
    )
    parser.add_argument(
        "--session-bus",
        default=None,
        metavar="ADDRESS",
        help="bus of the notification server (default: the session bus)",
    )
    parser.add_argument("--coalesce", type=float, default=2.0, metavar="SECONDS")
    parser.add_argument("--retry", type=float, default=60.0, metavar="SECONDS")
    parser.add_argument("--state", type=Path, default=None, metavar="FILE")
    parser.add_argument("--icon", default=os.environ.get("LIVEPATCH_NOTIFIER_ICON", DEFAULT_ICON))
    parser.add_argument("--debug", action="store_true")
    return parser.parse_args(argv)


async def _serve(notifier: Notifier) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(notifier.run())
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    configure_logging(args.debug)
    options = Options(
        system_bus=args.system_bus,
        session_bus=args.session_bus,
        coalesce=args.coalesce,
        retry=args.retry,
        icon=args.icon,
    )
    store = NotifiedStore(args.state or state_path())

    def command() -> int:
        asyncio.run(_serve(Notifier(options, store)))
        return 0

    return run(command, program="livepatch notifier", debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
