"""The daemon's outputs end to end: its D-Bus service on a private system bus, the
`livepatch notifier` agent posting to dunst on Xvfb, and the motd fragment.

The daemon is the real one (asyncio loop, control socket, LivepatchBusService)
over the in-memory fakes of the kernel and the patch service.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from livepatch.client import commands, control
from livepatch.client.daemon import Daemon
from livepatch.client.schedule import Timing
from livepatch.dbus import BUS_NAME, INTERFACE, OBJECT_PATH
from livepatch.dbus.service import LivepatchBusService
from tests.integration.dbus.buses import OPEN, Bus, private_bus
from tests.integration.dbus.desktop import dunst, history, running, wait_displayed, wait_line, xvfb
from tests.unit.client.fakes import World, make_world, patch

pytestmark = pytest.mark.slow

LIVEPATCH = Path(sys.executable).with_name("livepatch")
LISTENING = "listening for livepatch signals"


@pytest.fixture
def system_bus() -> Iterator[Bus]:
    with private_bus("system") as bus:  # Debian's default policy plus ours
        yield bus


@pytest.fixture
def session_bus() -> Iterator[Bus]:
    with private_bus("session", policy=OPEN, ours=False) as bus:
        yield bus


@pytest.fixture
def desktop_env(session_bus: Bus, tmp_path: Path) -> Iterator[dict[str, str]]:
    with xvfb() as display:
        yield {
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "DISPLAY": display,
            "DBUS_SESSION_BUS_ADDRESS": session_bus.address,
        }


@pytest.fixture
def world(tmp_path: Path) -> World:
    world = make_world(tmp_path)
    world.clock.now = datetime.now(UTC)
    commands.enable(world.runtime(), "good-token")
    return world


async def get_property(bus: MessageBus, name: str) -> Any:
    reply = await bus.call(
        Message(
            destination=BUS_NAME,
            path=OBJECT_PATH,
            interface="org.freedesktop.DBus.Properties",
            member="Get",
            signature="ss",
            body=[INTERFACE, name],
        )
    )
    assert reply is not None and reply.message_type is MessageType.METHOD_RETURN, reply
    return reply.body[0].value


def test_applied_and_failed_patches_reach_the_desktop_and_the_motd(
    world: World, system_bus: Bus, session_bus: Bus, desktop_env: dict[str, str], tmp_path: Path
) -> None:
    rt = replace(
        world.runtime(),
        clock=lambda: datetime.now(UTC),
        timing=Timing(jitter=0.0, startup_jitter=0.0),
    )
    fragment = tmp_path / "run" / "motd"
    notifier = [
        str(LIVEPATCH),
        "notifier",
        "--system-bus",
        system_bus.address,
        "--session-bus",
        session_bus.address,
        "--coalesce",
        "0.3",
        "--state",
        str(tmp_path / "notified.json"),
        "--debug",
    ]

    async def refresh() -> dict[str, Any]:
        return await asyncio.to_thread(control.request, rt.paths.control, "refresh")

    async def scenario() -> None:
        daemon = Daemon(rt, bus=LivepatchBusService, bus_address=system_bus.address, motd=fragment)
        task = asyncio.create_task(daemon.run())
        reader = await MessageBus(bus_address=system_bus.address).connect()
        try:
            for _ in range(100):
                if daemon.bus is not None and rt.paths.control.exists():
                    break
                await asyncio.sleep(0.1)
            assert daemon.bus is not None, "the daemon did not publish its D-Bus service"
            assert await get_property(reader, "State") == "kernel-upgrade-required"
            async with dunst(desktop_env, tmp_path), running(notifier, desktop_env) as agent:
                await wait_line(agent.stderr, LISTENING)

                world.metadata.patches_list = [patch("3", cves=["CVE-2024-1086"])]
                assert (await refresh())["ok"] is True
                await wait_displayed(desktop_env, 1)
                first = await history(desktop_env)  # closes it, so the next one counts
                assert await get_property(reader, "State") == "applied"
                assert "lp-6.1.0-56-amd64-3" in await get_property(reader, "AppliedPatches")
                assert "is fully patched — 1 fix" in fragment.read_text()

                bad = patch("4", cves=["CVE-2024-26581"])
                world.metadata.patches_list.append(bad)
                world.metadata.tampered.add(bad.patch_id)
                answer = await refresh()
                assert answer["ok"] is False
                assert answer["error"]["code"] == "signature-failure"
                await wait_displayed(desktop_env, 1)
                shown = await history(desktop_env)
                assert await get_property(reader, "State") == "apply-failed"
                assert "applying a fix to kernel 6.1.0-56-amd64 failed" in fragment.read_text()
        finally:
            reader.disconnect()
            daemon.stop()
            await task
        assert [entry["summary"] for entry in first] == [
            "Kernel security fix applied without reboot"
        ]
        assert [entry["summary"] for entry in shown] == [
            "Kernel security fix applied without reboot",
            "A kernel fix could not be applied",
        ]
        assert "CVE-2024-1086 (high)" in shown[0]["body"]
        assert "lp-6.1.0-56-amd64-4 could not be applied" in shown[1]["body"]

    asyncio.run(asyncio.wait_for(scenario(), 120))
