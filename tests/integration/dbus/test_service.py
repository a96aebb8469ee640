"""The service on a real dbus-daemon, talked to by real clients (dbus-fast, dbus-send)."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import Message, MessageType, Variant
from dbus_fast import introspection as intr
from dbus_fast.aio import MessageBus

from livepatch.dbus import BUS_NAME, INTERFACE, OBJECT_PATH
from livepatch.dbus.service import ROOT_ONLY, BusServiceError, LivepatchBusService
from tests.integration.dbus.buses import Bus, as_nobody
from tests.unit.dbus.documents import APPLIED, document

CONTRACT = Path(__file__).parents[3] / "interfaces" / "io.livepatch.Livepatch1.xml"
TIMEOUT = 10


@dataclass
class Daemon:
    """What the daemon gives the service: the current document and a refresh coroutine."""

    doc: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(APPLIED))
    refreshes: int = 0

    def status(self) -> dict[str, Any]:
        return self.doc

    async def refresh(self) -> dict[str, Any]:
        self.refreshes += 1
        self.doc = document(**{"Last-Check": "2026-01-10T12:30:00Z"})
        return self.doc


@asynccontextmanager
async def serving(bus: Bus, daemon: Daemon) -> AsyncIterator[LivepatchBusService]:
    service = LivepatchBusService(status=daemon.status, refresh=daemon.refresh)
    await service.start(bus.address)
    try:
        yield service
    finally:
        await service.stop()


@asynccontextmanager
async def client(bus: Bus) -> AsyncIterator[MessageBus]:
    connection = await MessageBus(bus_address=bus.address).connect()
    try:
        yield connection
    finally:
        connection.disconnect()


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), TIMEOUT * 3))


async def collect(connection: MessageBus, rule: str) -> asyncio.Queue[Message]:
    """Subscribe to `rule`; matching signals land in the returned queue."""
    queue: asyncio.Queue[Message] = asyncio.Queue()

    def handler(msg: Message) -> bool:
        if msg.message_type is MessageType.SIGNAL and msg.sender != "org.freedesktop.DBus":
            queue.put_nowait(msg)
        return False

    connection.add_message_handler(handler)
    reply = await connection.call(
        Message(
            destination="org.freedesktop.DBus",
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus",
            member="AddMatch",
            signature="s",
            body=[rule],
        )
    )
    assert reply is not None and reply.message_type is MessageType.METHOD_RETURN
    return queue


def call(
    member: str, *, interface: str = INTERFACE, signature: str = "", body: Any = ()
) -> Message:
    return Message(
        destination=BUS_NAME,
        path=OBJECT_PATH,
        interface=interface,
        member=member,
        signature=signature,
        body=list(body),
    )


def shape(interface: intr.Interface) -> dict[str, Any]:
    """Everything the contract fixes: members, argument names/directions/types, access."""
    return {
        "methods": {
            m.name: [(a.name, a.direction, a.signature) for a in [*m.in_args, *m.out_args]]
            for m in interface.methods
        },
        "signals": {s.name: [(a.name, a.signature) for a in s.args] for s in interface.signals},
        "properties": {p.name: (p.signature, p.access) for p in interface.properties},
    }


def test_live_introspection_equals_the_contract_xml(system_bus: Bus) -> None:
    contract = intr.Node.parse(CONTRACT.read_text())
    [expected] = [i for i in contract.interfaces if i.name == INTERFACE]

    async def scenario() -> None:
        async with serving(system_bus, Daemon()), client(system_bus) as bus:
            node = await bus.introspect(BUS_NAME, OBJECT_PATH)
        [live] = [i for i in node.interfaces if i.name == INTERFACE]
        assert shape(live) == shape(expected)
        assert len(shape(live)["properties"]) == 9

    run(scenario)


def test_properties_and_status_come_from_the_document(system_bus: Bus) -> None:
    async def scenario() -> None:
        async with serving(system_bus, Daemon()), client(system_bus) as bus:
            reply = await bus.call(
                call(
                    "GetAll",
                    interface="org.freedesktop.DBus.Properties",
                    signature="s",
                    body=[INTERFACE],
                )
            )
            assert reply is not None
            values = {name: variant.value for name, variant in reply.body[0].items()}
            status = await bus.call(call("Status"))
            assert status is not None
        assert values["State"] == "applied"
        assert values["Kernel"] == "6.1.0-56-amd64"
        assert values["Enrolled"] is True
        assert list(values["Fixes"][0]) == ["CVE-2024-1086", "high", True]
        assert values["AppliedPatches"] == ["lp-6.1.0-56-amd64-3"]
        assert values["Errors"] == []
        assert json.loads(status.body[0]) == APPLIED

    run(scenario)


def test_properties_changed_carries_only_the_changed_ones(system_bus: Bus) -> None:
    async def scenario() -> None:
        async with serving(system_bus, Daemon()) as service, client(system_bus) as bus:
            rule = f"type='signal',interface='org.freedesktop.DBus.Properties',path='{OBJECT_PATH}'"
            queue = await collect(bus, rule)
            service.status_changed(copy.deepcopy(APPLIED))  # nothing changed: no signal
            service.status_changed(
                document(State="apply-failed", Errors=[{"code": "c", "message": "m"}])
            )
            msg = await asyncio.wait_for(queue.get(), TIMEOUT)
            assert msg.member == "PropertiesChanged"
            assert msg.sender is not None
            name, changed, invalidated = msg.body
            assert name == INTERFACE
            assert {k: v.value for k, v in changed.items()} == {
                "State": "apply-failed",
                "Errors": [("c", "m")],
            }
            assert all(isinstance(v, Variant) for v in changed.values())
            assert invalidated == []
            assert queue.empty()
            reply = await bus.call(
                call(
                    "Get",
                    interface="org.freedesktop.DBus.Properties",
                    signature="ss",
                    body=[INTERFACE, "State"],
                )
            )
            assert reply is not None and reply.body[0].value == "apply-failed"

    run(scenario)


def test_patch_signals_reach_a_client(system_bus: Bus) -> None:
    async def scenario() -> None:
        async with serving(system_bus, Daemon()) as service, client(system_bus) as bus:
            queue = await collect(bus, f"type='signal',interface='{INTERFACE}'")
            service.patch_applied("lp-6.1.0-56-amd64-3", ["CVE-2024-1086", "cve-2023-0266"])
            service.patch_failed("lp-6.1.0-56-amd64-4", "The kernel rejected the signature.")
            applied = await asyncio.wait_for(queue.get(), TIMEOUT)
            failed = await asyncio.wait_for(queue.get(), TIMEOUT)
        assert (applied.member, applied.signature, applied.path) == (
            "PatchApplied",
            "sas",
            OBJECT_PATH,
        )
        assert applied.body == ["lp-6.1.0-56-amd64-3", ["CVE-2024-1086", "CVE-2023-0266"]]
        assert (failed.member, failed.signature) == ("PatchFailed", "ss")
        assert failed.body == ["lp-6.1.0-56-amd64-4", "The kernel rejected the signature."]

    run(scenario)


def test_refresh_from_root_runs_the_check(system_bus: Bus) -> None:
    daemon = Daemon()

    async def scenario() -> None:
        async with serving(system_bus, daemon), client(system_bus) as bus:
            reply = await bus.call(call("Refresh"))
        assert reply is not None and reply.message_type is MessageType.METHOD_RETURN
        assert json.loads(reply.body[0])["Last-Check"] == "2026-01-10T12:30:00Z"

    run(scenario)
    assert daemon.refreshes == 1


async def send_as_nobody(bus: Bus, *arguments: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *as_nobody("dbus-send", f"--bus={bus.address}", "--print-reply", *arguments),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


REFRESH = (f"--dest={BUS_NAME}", OBJECT_PATH, f"{INTERFACE}.Refresh")


def test_bus_policy_refuses_refresh_from_non_root_but_lets_it_read(system_bus: Bus) -> None:
    daemon = Daemon()

    async def scenario() -> None:
        async with serving(system_bus, daemon):
            refresh = await send_as_nobody(system_bus, *REFRESH)
            status = await send_as_nobody(
                system_bus, f"--dest={BUS_NAME}", OBJECT_PATH, f"{INTERFACE}.Status"
            )
            state = await send_as_nobody(
                system_bus,
                f"--dest={BUS_NAME}",
                OBJECT_PATH,
                "org.freedesktop.DBus.Properties.Get",
                f"string:{INTERFACE}",
                "string:State",
            )
        code, _, err = refresh
        assert code != 0
        assert "org.freedesktop.DBus.Error.AccessDenied" in err
        assert status[0] == 0 and '"Machine-Id"' in status[1]
        assert state[0] == 0 and '"applied"' in state[1]

    run(scenario)
    assert daemon.refreshes == 0


def test_service_refuses_refresh_from_non_root_even_when_the_bus_allows_it(open_bus: Bus) -> None:
    daemon = Daemon()

    async def scenario() -> None:
        async with serving(open_bus, daemon):
            code, _, err = await send_as_nobody(open_bus, *REFRESH)
        assert code != 0
        assert f"Error org.freedesktop.DBus.Error.AccessDenied: {ROOT_ONLY}" in err

    run(scenario)
    assert daemon.refreshes == 0


def test_only_root_may_own_the_name(system_bus: Bus) -> None:
    async def scenario() -> None:
        code, _, err = await send_as_nobody(
            system_bus,
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.RequestName",
            f"string:{BUS_NAME}",
            "uint32:4",
        )
        assert code != 0 and "AccessDenied" in err

    run(scenario)


def test_second_daemon_cannot_take_the_name(system_bus: Bus) -> None:
    async def scenario() -> None:
        async with serving(system_bus, Daemon()):
            second = LivepatchBusService(status=Daemon().status, refresh=Daemon().refresh)
            with pytest.raises(BusServiceError, match="Another process owns"):
                await second.start(system_bus.address)

    run(scenario)


def test_unreachable_bus_is_one_plain_sentence(tmp_path: Path) -> None:
    async def scenario() -> None:
        service = LivepatchBusService(status=Daemon().status, refresh=Daemon().refresh)
        with pytest.raises(BusServiceError, match=r"^Could not connect to .*; check that"):
            await service.start(f"unix:path={tmp_path}/absent")

    run(scenario)
