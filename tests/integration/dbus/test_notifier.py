"""The notifier end to end: a real service on a private system bus, dunst on Xvfb."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Coroutine, Iterator
from pathlib import Path

import pytest
from dbus_fast import Message

from livepatch.dbus import INTERFACE, OBJECT_PATH
from livepatch.dbus.service import LivepatchBusService
from tests.integration.dbus.buses import OPEN, Bus, private_bus
from tests.integration.dbus.desktop import (
    dunst,
    history,
    notifier_command,
    running,
    wait_displayed,
    wait_line,
    xvfb,
)
from tests.integration.dbus.test_service import Daemon, client

pytestmark = pytest.mark.slow

PATCH = "lp-6.1.0-56-amd64-3"
LISTENING = "listening for livepatch signals"


@pytest.fixture
def session_bus() -> Iterator[Bus]:
    with private_bus("session", policy=OPEN, ours=False) as bus:
        yield bus


@pytest.fixture
def display() -> Iterator[str]:
    with xvfb() as name:
        yield name


@pytest.fixture
def env(session_bus: Bus, display: str, tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "DISPLAY": display,
        "DBUS_SESSION_BUS_ADDRESS": session_bus.address,
        "PYTHONPATH": os.pathsep.join(p for p in [os.environ.get("PYTHONPATH", "")] if p),
    }


def run(scenario: Coroutine[None, None, None]) -> None:
    asyncio.run(asyncio.wait_for(scenario, 120))


async def started(system_bus: Bus) -> LivepatchBusService:
    daemon = Daemon()
    service = LivepatchBusService(status=daemon.status, refresh=daemon.refresh)
    await service.start(system_bus.address)
    return service


def test_burst_is_one_notification_naming_the_cves_and_never_repeats(
    system_bus: Bus, session_bus: Bus, env: dict[str, str], tmp_path: Path
) -> None:
    state = tmp_path / "state" / "notified.json"
    command = notifier_command(system_bus.address, session_bus.address, state)

    async def scenario() -> None:
        service = await started(system_bus)
        try:
            async with dunst(env, tmp_path):
                async with running(command, env) as notifier:
                    await wait_line(notifier.stderr, LISTENING)
                    service.patch_applied(PATCH, ["CVE-2024-1086"])
                    service.patch_applied("lp-6.1.0-56-amd64-4", ["CVE-2023-3390"])
                    await wait_displayed(env, 1)
                    shown = await history(env)
                    assert len(shown) == 1
                    assert shown[0]["summary"] == "2 kernel security fixes applied without reboot"
                    assert "CVE-2024-1086 (high)" in shown[0]["body"]
                    assert "CVE-2023-3390 (low)" in shown[0]["body"]
                    assert shown[0]["urgency"] == "CRITICAL"
                    assert shown[0]["appname"] == "Livepatch"

                # A new notifier process remembers what was shown (state file).
                assert json.loads(state.read_text())["notified"] == [
                    ["applied", PATCH],
                    ["applied", "lp-6.1.0-56-amd64-4"],
                ]
                async with running(command, env) as notifier:
                    await wait_line(notifier.stderr, LISTENING)
                    service.patch_applied(PATCH, ["CVE-2024-1086"])
                    service.patch_failed("lp-6.1.0-56-amd64-5", "The kernel refused it.")
                    await wait_displayed(env, 1)
                    shown = await history(env)
                    assert len(shown) == 2
                    assert shown[1]["summary"] == "A kernel fix could not be applied"
                    assert PATCH not in shown[1]["body"]
                    assert "lp-6.1.0-56-amd64-5 could not be applied" in shown[1]["body"]
                    assert shown[1]["urgency"] == "NORMAL"
        finally:
            await service.stop()

    run(scenario())


def test_forged_signal_from_another_connection_is_ignored(
    system_bus: Bus, session_bus: Bus, env: dict[str, str], tmp_path: Path
) -> None:
    command = notifier_command(system_bus.address, session_bus.address, tmp_path / "n.json")

    async def scenario() -> None:
        service = await started(system_bus)
        try:
            async with dunst(env, tmp_path), running(command, env) as notifier:
                await wait_line(notifier.stderr, LISTENING)
                async with client(system_bus) as forger:
                    await forger.send(
                        Message.new_signal(
                            OBJECT_PATH, INTERFACE, "PatchApplied", "sas", ["lp-forged", ["CVE-1"]]
                        )
                    )
                    service.patch_applied(PATCH, ["CVE-2024-1086"])
                    await wait_displayed(env, 1)
                    await asyncio.sleep(1)
                shown = await history(env)
                assert len(shown) == 1
                assert "lp-forged" not in shown[0]["body"]
                assert PATCH in shown[0]["body"]
        finally:
            await service.stop()

    run(scenario())


def test_without_a_notification_server_it_stays_quiet_alive_and_retries(
    system_bus: Bus, session_bus: Bus, env: dict[str, str], tmp_path: Path
) -> None:
    command = notifier_command(system_bus.address, session_bus.address, tmp_path / "n.json")

    async def scenario() -> None:
        service = await started(system_bus)
        try:
            async with running(command, env) as notifier:
                await wait_line(notifier.stderr, LISTENING)
                service.patch_applied(PATCH, ["CVE-2024-1086"])
                warning = await wait_line(notifier.stderr, "No notification server")
                assert len(warning) == 1
                await asyncio.sleep(3.5)  # three more retries (--retry 1), all quiet
                assert notifier.returncode is None
                async with dunst(env, tmp_path):
                    await wait_displayed(env, 1)
                    shown = await history(env)
                    assert len(shown) == 1 and PATCH in shown[0]["body"]
                    recovered = await wait_line(notifier.stderr, "notification server answers")
                    assert len(recovered) == 1, f"retries were not quiet: {recovered}"
        finally:
            await service.stop()

    run(scenario())
