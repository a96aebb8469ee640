from __future__ import annotations

import asyncio
import os
import socket
import stat
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from livepatch.client import commands, control
from livepatch.client.daemon import Daemon
from livepatch.client.errors import MetadataRejected
from livepatch.client.schedule import Timing
from livepatch.client.sdnotify import notify
from livepatch.client.state import CheckState, State, StateFile
from tests.unit.client.fakes import World, patch

FAST = Timing(jitter=0.0, backoff_base=0.05, backoff_cap=0.4, startup_jitter=0.0)


def real_time(world: World):
    return replace(world.runtime(), clock=lambda: datetime.now(UTC), timing=FAST)


async def until(condition, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


class RecordingBus:
    def __init__(self, status, refresh) -> None:
        self.status, self.refresh = status, refresh
        self.changes: list[dict] = []
        self.applied: list[tuple[str, list[str]]] = []
        self.failed: list[tuple[str, str]] = []
        self.started = self.stopped = False

    async def start(self, bus_address=None) -> None:
        self.started = True

    def status_changed(self, doc) -> None:
        self.changes.append(doc)

    def patch_applied(self, patch_id, cves) -> None:
        self.applied.append((patch_id, cves))

    def patch_failed(self, patch_id, reason) -> None:
        self.failed.append((patch_id, reason))

    async def stop(self) -> None:
        self.stopped = True


class BrokenBus(RecordingBus):
    async def start(self, bus_address=None) -> None:
        raise OSError("no system bus")


def enrolled(world: World) -> None:
    world.clock.now = datetime.now(UTC)
    commands.enable(world.runtime(), "good-token")


def test_service_down_backs_off_then_recovers_without_operator(world):
    enrolled(world)
    world.metadata.patches_list = [patch("3")]
    world.metadata.down = 4
    rt = real_time(world)
    states = StateFile(rt.paths.state)

    async def scenario() -> Daemon:
        daemon = Daemon(rt)
        task = asyncio.create_task(daemon.run())
        await until(lambda: daemon.checks >= 5 and states.load().applied is not None)
        daemon.stop()
        await task
        return daemon

    started = asyncio.get_event_loop_policy().new_event_loop()
    try:
        daemon = started.run_until_complete(scenario())
    finally:
        started.close()
    assert world.metadata.refreshes == 1 + 5  # enable's inline check, then the daemon's
    assert world.service.renewals == 0
    state = states.load()
    assert state.failures == 0 and state.check_state is CheckState.CHECKED
    assert world.kernel.loads == [patch("3").module_name]
    # healthy again: the next check is a whole interval (60 min) away, not a retry
    assert (state.next_check - datetime.now(UTC)).total_seconds() > 3000
    assert daemon.checks == 5


def test_refresh_over_the_control_socket_and_bus_signals(world):
    enrolled(world)
    rt = real_time(world)
    buses: list[RecordingBus] = []

    def bus_factory(status, refresh):
        bus = RecordingBus(status, refresh)
        buses.append(bus)
        return bus

    async def scenario() -> dict:
        daemon = Daemon(rt, bus=bus_factory)
        task = asyncio.create_task(daemon.run())
        await until(lambda: rt.paths.control.exists() and daemon.checks >= 1)
        mode = stat.S_IMODE(os.stat(rt.paths.control).st_mode)
        assert mode == 0o600
        assert commands.daemon_running(rt.paths)
        world.metadata.patches_list = [patch("3")]
        answer = await asyncio.to_thread(control.request, rt.paths.control, "refresh")
        daemon.stop()
        await task
        return answer

    answer = asyncio.run(scenario())
    assert answer["ok"] is True
    assert answer["status"]["Status"][0]["Livepatch"]["State"] == "applied"
    bus = buses[0]
    assert bus.started and bus.stopped
    assert bus.applied == [(patch("3").patch_id, ["CVE-2024-1086"])]
    assert bus.changes[-1]["Applied-Patches"] == [patch("3").patch_id]
    assert not rt.paths.control.exists()
    assert not commands.daemon_running(rt.paths)


def test_daemon_runs_on_without_a_bus(world):
    enrolled(world)
    rt = real_time(world)

    async def scenario() -> int:
        daemon = Daemon(rt, bus=BrokenBus)
        task = asyncio.create_task(daemon.run())
        await until(lambda: daemon.checks >= 1)
        daemon.stop()
        await task
        return daemon.checks

    assert asyncio.run(scenario()) == 1


def test_not_enrolled_daemon_sleeps_until_reload(world):
    rt = real_time(world)

    async def scenario() -> tuple[int, int]:
        daemon = Daemon(rt)
        task = asyncio.create_task(daemon.run())
        await until(lambda: rt.paths.control.exists())
        await asyncio.sleep(0.3)
        idle_checks = daemon.checks
        await asyncio.to_thread(commands.enable, rt, "good-token")
        await until(lambda: daemon.checks >= 1)
        daemon.stop()
        await task
        return idle_checks, daemon.checks

    idle, after = asyncio.run(scenario())
    assert idle == 0 and after >= 1


def test_refresh_when_no_daemon_runs_falls_back(world):
    with pytest.raises(control.DaemonNotRunning):
        control.request(world.paths.control, "refresh")


def test_a_second_daemon_refuses_to_start(world):
    rt = real_time(world)

    async def scenario() -> None:
        first = Daemon(rt)
        task = asyncio.create_task(first.run())
        await until(lambda: rt.paths.control.exists())
        with pytest.raises(Exception, match="Another livepatch command"):
            await Daemon(rt).run()
        first.stop()
        await task

    asyncio.run(scenario())


def test_sd_notify_sends_a_datagram(tmp_path):
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        assert notify("READY=1", {"NOTIFY_SOCKET": str(path)})
        assert server.recv(100) == b"READY=1"
    assert not notify("READY=1", {})
    assert not notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "missing")})


def test_motd_fragment_is_written_on_start_after_each_check_and_on_reload(world, tmp_path):
    enrolled(world)
    rt = real_time(world)
    fragment = tmp_path / "run" / "motd"

    async def scenario() -> list[str]:
        texts = []
        daemon = Daemon(rt, motd=fragment)
        task = asyncio.create_task(daemon.run())
        await until(lambda: rt.paths.control.exists())
        texts.append(fragment.read_text())
        world.metadata.patches_list = [patch("3")]
        await asyncio.to_thread(control.request, rt.paths.control, "refresh")
        texts.append(fragment.read_text())
        await asyncio.to_thread(commands.disable, rt, unload=True)  # asks the daemon to reload
        texts.append(fragment.read_text())
        daemon.stop()
        await task
        return texts

    started, checked, disabled = asyncio.run(scenario())
    assert started.startswith("#livepatch-motd v1 written=")
    assert "kernel 6.1.0-56-amd64 gets no more fixes" in started  # nothing published yet
    assert "kernel 6.1.0-56-amd64 is fully patched — 1 fix, last check @AGO@." in checked
    assert "Livepatch is not enabled on this machine" in disabled
    assert os.stat(fragment).st_mode & 0o777 == 0o644


def test_isolated_check_ins_report_failures_like_in_process_ones(world):
    """In a forked child the in-memory fakes' changes stay in the child, but the
    outcome (and the state file) come back: a signature failure is reported."""
    enrolled(world)
    p = patch("3")
    world.metadata.patches_list = [p]
    world.metadata.tampered.add(p.patch_id)
    rt = real_time(world)

    async def scenario() -> dict:
        daemon = Daemon(rt, isolate=True)
        task = asyncio.create_task(daemon.run())
        await until(lambda: rt.paths.control.exists())
        answer = await asyncio.to_thread(control.request, rt.paths.control, "refresh")
        daemon.stop()
        await task
        return answer

    answer = asyncio.run(scenario())
    assert answer["ok"] is False
    assert answer["error"]["code"] == "signature-failure"
    assert answer["status"]["Status"][0]["Livepatch"]["State"] == "apply-failed"
    assert StateFile(rt.paths.state).load().errors[0].code == "signature-failure"
    assert world.kernel.loads == []


def test_a_corrupt_config_file_is_recorded_and_the_daemon_keeps_running(world):
    enrolled(world)
    rt = real_time(world)
    rt.paths.config.write_text('{"remote-server": "https://patches.test", ')  # cut short
    states = StateFile(rt.paths.state)
    states.save(replace(states.load(), next_check=None))

    async def scenario() -> tuple[State, dict]:
        daemon = Daemon(rt)
        task = asyncio.create_task(daemon.run())
        await until(lambda: daemon.checks >= 1 and states.load().next_check is not None)
        failed = states.load()
        assert not task.done()
        await asyncio.to_thread(commands.set_config, rt.paths, ["check-interval=30"])
        answer = await asyncio.to_thread(control.request, rt.paths.control, "refresh")
        daemon.stop()
        await task
        return failed, answer

    failed, answer = asyncio.run(scenario())
    [error] = failed.errors
    assert error.code == "invalid-config"
    assert error.message.startswith(
        f"The config file {rt.paths.config} is unreadable (not valid JSON: "
    )
    assert "`livepatch config KEY=VALUE`" in error.message
    # scheduled at the default interval (60 minutes, no jitter here), not a retry in seconds
    wait = (failed.next_check - datetime.now(UTC)).total_seconds()
    assert 3500 < wait <= 3600
    assert answer["ok"] is True  # repaired with `livepatch config`: the daemon carried on
    repaired = states.load()
    assert repaired.errors == () and repaired.check_state is CheckState.CHECKED
    assert 1700 < (repaired.next_check - datetime.now(UTC)).total_seconds() <= 1800


def test_a_non_retryable_failure_schedules_the_next_check_at_the_interval(world):
    enrolled(world)
    world.metadata.refusal = MetadataRejected("The snapshot metadata is not signed.")
    rt = real_time(world)
    states = StateFile(rt.paths.state)
    states.save(replace(states.load(), next_check=None))

    async def scenario() -> None:
        daemon = Daemon(rt)
        task = asyncio.create_task(daemon.run())
        await until(lambda: daemon.checks >= 1 and states.load().next_check is not None)
        daemon.stop()
        await task

    asyncio.run(scenario())
    state = states.load()
    assert state.errors[0].code == "metadata-rejected" and state.failures == 0
    assert 3500 < (state.next_check - datetime.now(UTC)).total_seconds() <= 3600


def test_a_denied_kernel_file_leaves_the_daemon_up_blocked_until_reload(world, monkeypatch):
    """Strict confinement before `snap connect`: the daemon stays up, its status names the
    plug, and a reload (the connect-plug hook's) picks the connection up."""
    from pathlib import Path

    from livepatch.kernel.errors import AccessDenied

    rt = real_time(world)
    real_identity = world.kernel.identity
    denied = AccessDenied(Path("/proc/sys/kernel/arch"), "kernel-state", errno=13)

    def refuse():
        raise denied

    monkeypatch.setattr(world.kernel, "identity", refuse)
    reported: list[dict] = []

    async def scenario() -> tuple[dict, dict]:
        daemon = Daemon(rt, on_status=reported.append)
        task = asyncio.create_task(daemon.run())
        await until(lambda: rt.paths.control.exists())
        blocked = await asyncio.to_thread(control.request, rt.paths.control, "status")
        monkeypatch.setattr(world.kernel, "identity", real_identity)
        await asyncio.to_thread(control.request, rt.paths.control, "reload")
        after = await asyncio.to_thread(control.request, rt.paths.control, "status")
        daemon.stop()
        await task
        return blocked, after

    blocked, after = asyncio.run(scenario())
    assert blocked["status"]["Errors"] == [{"code": "access-denied", "message": str(denied)}]
    assert "connect its kernel-state plug" in str(denied)
    assert blocked["status"]["Daemon-Running"] is True
    assert after["status"]["Errors"] == [] and after["status"]["Status"]
    assert [doc["Errors"] for doc in reported][:1] == [blocked["status"]["Errors"]]
    assert reported[-1]["Errors"] == []


def test_a_plug_disconnected_while_running_blocks_at_the_next_check(world, monkeypatch):
    """`snap disconnect` of livepatch-sysfs under a running daemon: its next check-in is
    denied the kernel's patch list; the status (and so the snap's health) names the plug
    instead of keeping the last good document, and a reload after the connect clears it."""
    from pathlib import Path

    from livepatch.kernel.errors import AccessDenied

    rt = real_time(world)
    real_loaded = world.kernel.loaded
    denied = AccessDenied(Path("/sys/kernel/livepatch"), "livepatch-sysfs", errno=13)
    reported: list[dict] = []

    def refuse():
        raise denied

    async def scenario() -> tuple[dict, dict, dict]:
        daemon = Daemon(rt, on_status=reported.append)
        task = asyncio.create_task(daemon.run())
        await until(lambda: rt.paths.control.exists())
        before = await asyncio.to_thread(control.request, rt.paths.control, "status")
        monkeypatch.setattr(world.kernel, "loaded", refuse)
        await asyncio.to_thread(control.request, rt.paths.control, "refresh")
        blocked = await asyncio.to_thread(control.request, rt.paths.control, "status")
        monkeypatch.setattr(world.kernel, "loaded", real_loaded)
        await asyncio.to_thread(control.request, rt.paths.control, "reload")
        after = await asyncio.to_thread(control.request, rt.paths.control, "status")
        daemon.stop()
        await task
        return before, blocked, after

    before, blocked, after = asyncio.run(scenario())
    assert before["status"]["Errors"] == []
    assert blocked["status"]["Errors"] == [{"code": "access-denied", "message": str(denied)}]
    assert "connect its livepatch-sysfs plug" in str(denied)
    assert after["status"]["Errors"] == []
    assert any(doc["Errors"] == blocked["status"]["Errors"] for doc in reported)
    assert reported[-1]["Errors"] == []
