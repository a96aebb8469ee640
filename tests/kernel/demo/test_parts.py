"""The demo's parts that need no VM: signal parsing, snap environment, machine choice,
the rollout policy file, the host/agent protocol and the leftover sweep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from livepatch.rollout import BUCKETS, bucket
from livepatch.server.config import load_config
from tests.demo import flow
from tests.demo.client import expand
from tests.demo.processes import RUN_VARIABLE, kill_marked, listening, marked
from tests.demo.service import Admin, private_tls, running_service
from tests.demo.vm import GuestError, GuestVm
from tests.vm import VmResult

MONITOR = """\
signal time=1.0 sender=org.freedesktop.DBus -> destination=:1.0 serial=2 path=/org/freedesktop/DBus; interface=org.freedesktop.DBus; member=NameAcquired
   string ":1.0"
signal time=2.0 sender=:1.3 -> destination=(null destination) serial=12 path=/io/livepatch/Livepatch1; interface=io.livepatch.Livepatch1; member=PatchApplied
   string "lp-6.1.0-56-amd64-1"
   array [
      string "CVE-2099-10001"
   ]
signal time=3.0 sender=:1.3 -> destination=(null destination) serial=13 path=/io/livepatch/Livepatch1; interface=io.livepatch.Livepatch1; member=PatchFailed
   string "lp-6.1.0-56-amd64-3"
   string "The kernel refused the module."
"""  # noqa: E501


def test_only_our_signals_are_parsed_with_their_arguments() -> None:
    assert flow.parse_signals(MONITOR) == [
        ("PatchApplied", ["lp-6.1.0-56-amd64-1", "CVE-2099-10001"]),
        ("PatchFailed", ["lp-6.1.0-56-amd64-3", "The kernel refused the module."]),
    ]
    assert flow.parse_signals("") == []


def test_snap_environment_expands_like_snapd() -> None:
    value = "${SNAP_LIBRARY_PATH}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}:$SNAP/lib"
    assert expand(value, {"SNAP": "/s", "SNAP_LIBRARY_PATH": "/gl"}) == "/gl:/s/lib"
    both = {"SNAP": "/s", "SNAP_LIBRARY_PATH": "/gl", "LD_LIBRARY_PATH": "/x"}
    assert expand(value, both) == "/gl:/x:/s/lib"
    assert expand("$SNAP/bin:$PATH", {"SNAP": "/s", "PATH": "/usr/bin"}) == "/s/bin:/usr/bin"


def test_the_vm_machine_id_is_one_of_fix4s_canaries() -> None:
    patch_id = flow.predicted_patch_id("6.1.0-56-amd64", flow.FIX4)
    assert patch_id == "lp-6.1.0-56-amd64-3"
    machine_id = flow.canary_machine_id(patch_id)
    # Fixed vector from docs/CONTRACTS.md's formula: sha256(machine id NUL patch id),
    # first 8 bytes big-endian, mod 10000 -> 650, under the canary threshold 1000 (10%).
    assert machine_id == "a88caa35e5ac3ab2c513df5d768fc99d"
    assert bucket(machine_id, patch_id) == 650
    assert round(flow.CANARY_PERCENTAGE * BUCKETS / 100) == 1000


def test_the_faulty_fix_gets_no_patch_number() -> None:
    with pytest.raises(KeyError):
        flow.predicted_patch_id("6.1.0-56-amd64", flow.FAULTY)


def test_the_policy_file_is_what_the_server_reads(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(flow.policy_toml())
    config = load_config(tmp_path)
    policy = config.policy
    assert policy.canary_percentage == flow.CANARY_PERCENTAGE
    assert policy.moderate_percentage == flow.MODERATE_PERCENTAGE
    assert policy.canary_soak.total_seconds() == pytest.approx(flow.CANARY_SOAK_SECONDS)
    assert policy.moderate_soak.total_seconds() == pytest.approx(flow.MODERATE_SOAK_SECONDS)
    assert policy.minimum_sample == flow.MINIMUM_SAMPLE
    assert config.engine_interval.total_seconds() == 1


def local_agent(command: str) -> VmResult:
    """Run the agent on this host instead of in a VM."""
    started = time.monotonic()
    process = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False)
    output = process.stdout + process.stderr
    return VmResult(command, process.returncode, output, time.monotonic() - started)


def test_the_agent_runs_spawns_writes_and_stops_what_it_spawned(tmp_path: Path) -> None:
    with GuestVm(launcher=local_agent, agent_host="127.0.0.1") as vm:
        vm.wait_ready(timeout=60)
        assert vm.release == os.uname().release
        echoed = vm.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
        assert (echoed.returncode, echoed.stdout, echoed.stderr) == (3, "out\n", "err\n")
        with pytest.raises(GuestError, match="exited 3"):
            echoed.check()
        vm.write(tmp_path / "sub" / "file", "text\n")
        assert (tmp_path / "sub" / "file").read_text() == "text\n"
        pid = vm.spawn("sleeper", ["sleep", "60"], output=tmp_path / "sleep.log")
        assert Path(f"/proc/{pid}").exists()
    assert not vm.running
    assert not Path(f"/proc/{pid}").exists()
    assert vm.result is not None and vm.result.returncode == 0, vm.result


def test_an_agent_that_never_connects_is_reported() -> None:
    def broken(command: str) -> VmResult:
        return VmResult(command, 1, "kernel panic", 0.0)

    with GuestVm(launcher=broken) as vm, pytest.raises(GuestError, match="kernel panic"):
        vm.wait_ready(timeout=30)


def test_leftovers_are_found_by_run_id_and_killed() -> None:
    run_id = "test-" + os.urandom(8).hex()
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={**os.environ, RUN_VARIABLE: run_id},
    )
    try:
        deadline = time.monotonic() + 10
        while not marked(run_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        found = kill_marked(run_id)
        assert [pid for pid, _ in found] == [process.pid]
        assert process.wait(timeout=10) == -signal.SIGTERM
        assert marked(run_id) == []
    finally:
        process.kill()
        process.wait()


@pytest.mark.slow
def test_a_failure_midway_leaves_nothing_running_or_listening(tmp_path: Path) -> None:
    run_id = "test-" + os.urandom(8).hex()
    marker = {RUN_VARIABLE: run_id}

    def agent_with_marker(command: str) -> VmResult:
        process = subprocess.run(
            ["sh", "-c", command],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, **marker},
        )
        return VmResult(command, process.returncode, process.stdout + process.stderr, 0.0)

    admin = Admin(tmp_path, marker)
    admin.run("keys", "init")
    tls = private_tls(tmp_path / "tls", ["127.0.0.1"])
    ports: list[int] = []
    with pytest.raises(RuntimeError, match="midway"), flow.cleanup(run_id) as stack:
        service = stack.enter_context(running_service(admin, tls))
        vm = stack.enter_context(GuestVm(launcher=agent_with_marker, agent_host="127.0.0.1"))
        ports += [service.port, vm.port]
        vm.wait_ready(timeout=60)
        vm.spawn("sleeper", ["sleep", "300"], output=tmp_path / "sleep.log")
        assert len(marked(run_id)) >= 3  # the service, the agent and its sleeper
        raise RuntimeError("midway")
    assert marked(run_id) == []
    assert not any(listening(port) for port in ports)
