"""The .snap that `make snap` builds, unpacked and run as snapd would run it.

Builds (or reuses) build/snap/livepatch_*.snap through the same code as
`make snap`, unpacks it with unsquashfs, checks meta/, then runs the packaged
CLI, the daemon and every hook from the unpacked tree with SNAP, SNAP_DATA,
SNAP_COMMON and the stand-in snapctl on PATH (tests/snap/snapd.py). Nothing
is enabled here: applying a patch from the packaged client happens in the VM
(tests/kernel/snap).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from livepatch import __version__
from livepatch.client import control, transitions
from livepatch.client.paths import Paths
from livepatch.client.state import CheckState, Enrolment, State, StateFile
from livepatch.snap import build
from tests.integration.dbus.buses import SYSTEM_DEFAULT, as_nobody, private_bus
from tests.snap.snapd import InstalledSnap, unsquash

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
# The bus policy snapd writes for a `dbus` slot on the system bus
# (interfaces/builtin/dbus.go, dbusPermanentSlotDBus).
SNAPD_SLOT_POLICY = """
  <policy user="root">
    <allow own="io.livepatch.Livepatch1"/>
    <allow send_destination="io.livepatch.Livepatch1"/>
  </policy>
  <policy context="default">
    <allow send_destination="io.livepatch.Livepatch1"/>
  </policy>
"""


@pytest.fixture(scope="module")
def built() -> build.Built:
    return build.build(REPO, REPO / "build" / "snap")


@pytest.fixture(scope="module")
def unpacked(built: build.Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return unsquash(built.snap, tmp_path_factory.mktemp("snap") / "livepatch" / "x1")


@pytest.fixture
def installed(unpacked: Path, tmp_path: Path) -> InstalledSnap:
    return InstalledSnap(unpacked, tmp_path)


@pytest.fixture
def daemon(installed: InstalledSnap, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with running_daemon(installed, tmp_path) as process:
        yield process


@contextlib.contextmanager
def running_daemon(installed: InstalledSnap, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The packaged livepatchd, on a private bus with the policy snapd writes for the slot."""
    assert installed.run_hook("install").returncode == 0
    log = tmp_path / "daemon.log"
    with private_bus("system", policy=SYSTEM_DEFAULT + SNAPD_SLOT_POLICY, ours=False) as bus:
        process = installed.start_app(
            "livepatchd", log=log, extra={"DBUS_SYSTEM_BUS_ADDRESS": bus.address}
        )
        process.bus_address = bus.address  # type: ignore[attr-defined]
        process.log = log  # type: ignore[attr-defined]
        try:
            deadline = time.monotonic() + 60
            while not (installed.data / "control.sock").exists():
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"the daemon did not start: {log.read_text()}"
                time.sleep(0.1)
            yield process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)


def ask_daemon(installed: InstalledSnap) -> dict:
    answer = control.request(installed.data / "control.sock", "status", timeout=30)
    assert answer["ok"], answer
    return answer["status"]


# -- what is in the .snap --------------------------------------------------------


def test_make_snap_prints_the_snap_path_last_and_reuses_an_unchanged_build(built):
    done = subprocess.run(
        ["make", "--no-print-directory", "snap"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == str(built.snap)
    assert "inputs unchanged, reused" in lines[-2]
    assert built.snap.name == f"livepatch_{__version__}_amd64.snap"


def test_meta_snap_yaml_is_generated_from_snapcraft_yaml(unpacked):
    meta = yaml.safe_load((unpacked / "meta" / "snap.yaml").read_text())
    project = build.load_project(REPO)
    assert meta == build.snap_metadata(project, version=__version__, arch="amd64")
    assert set(meta["apps"]) == {"livepatch", "livepatchd", "notifier"}
    assert meta["slots"]["livepatch-service"]["bus"] == "system"


def test_the_prime_tree_is_laid_out_as_snapcrafts_python_plugin_does(unpacked):
    python = unpacked / "bin" / "python3"
    assert python.is_symlink() and os.readlink(python).startswith("/usr/bin/python3.")
    assert (unpacked / "pyvenv.cfg").is_file()
    assert (unpacked / "bin" / "livepatch").read_text().startswith("#!/usr/bin/env python3\n")
    site = next((unpacked / "lib").glob("python3.*/site-packages"))
    for package in ("livepatch", "requests", "cryptography", "tuf", "dbus_fast", "yaml"):
        assert (site / package).is_dir(), package
    for absent in ("pip", "livepatch/server"):
        assert not (site / absent).exists(), absent
    assert not (unpacked / "bin" / "livepatch-server").exists()
    hooks = sorted(p.name for p in (unpacked / "meta" / "hooks").iterdir())
    assert hooks == sorted(p.name for p in (REPO / "hooks").iterdir())
    for hook in hooks:
        assert os.access(unpacked / "meta" / "hooks" / hook, os.X_OK)
        assert (unpacked / "snap" / "hooks" / hook).read_bytes() == (
            REPO / "hooks" / hook
        ).read_bytes()
    assert (unpacked / "usr/share/livepatch/livepatch-notifier.desktop").is_file()


# -- the packaged apps -----------------------------------------------------------


def test_the_packaged_cli_runs_from_the_snap(installed):
    done = installed.run_app("livepatch", "--version")
    assert (done.returncode, done.stdout.strip()) == (0, f"livepatch {__version__}")
    where = subprocess.run(
        [
            str(installed.root / "bin" / "python3"),
            "-c",
            "import livepatch; print(livepatch.__file__)",
        ],
        env=installed.environ(),
        capture_output=True,
        text=True,
        cwd=installed.data,
    )
    assert where.stdout.strip().startswith(str(installed.root)), where
    status = installed.run_app("livepatch", "status", "--format", "json")
    doc = json.loads(status.stdout)
    assert (doc["Client-Version"], doc["Enrolled"]) == (__version__, False)
    assert "Machine is not enabled" in status.stderr


def test_the_notifier_app_installs_its_autostart_entry(installed):
    done = installed.run_app("notifier", "--help")
    assert done.returncode == 0, done.stderr
    entry = installed.user_data / ".config" / "autostart" / "livepatch-notifier.desktop"
    assert "Exec=livepatch.notifier" in entry.read_text()


def test_the_packaged_daemon_owns_its_name_on_the_bus_snapd_configures(installed, daemon):
    reply = subprocess.run(
        as_nobody(
            "dbus-send",
            f"--bus={daemon.bus_address}",
            "--print-reply",
            "--dest=io.livepatch.Livepatch1",
            "/io/livepatch/Livepatch1",
            "io.livepatch.Livepatch1.Status",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert reply.returncode == 0, reply.stderr + daemon.log.read_text()
    assert "Client-Version" in reply.stdout
    # the login-message fragment goes to the snap's own run directory (snapcraft.yaml)
    assert (installed.run_dir / "motd").read_text().startswith("#livepatch-motd v1 ")
    os.killpg(daemon.pid, signal.SIGTERM)
    assert daemon.wait(timeout=30) == 0  # systemd's stop: a clean exit, no restart
    assert not (installed.data / "control.sock").exists()


# -- the hooks -------------------------------------------------------------------


def test_install_lays_out_data_and_sets_the_default_interval(installed):
    done = installed.run_hook("install")
    assert done.returncode == 0, done.stderr
    assert (installed.data / "metadata").is_dir() and (installed.data / "config.json").is_file()
    assert installed.config == {"check-interval": 60}
    assert " install ok: " in (installed.common / "hooks.log").read_text()


def enrolled_until_tomorrow(installed: InstalledSnap) -> None:
    """A state record of an enrolled machine whose next check-in is a day away, so the
    daemon started on it stays idle (and this host's kernel is never touched)."""
    now = datetime.now(UTC)
    paths = Paths(installed.data)
    paths.ensure()
    enrolment = Enrolment("m-test", "community", "https://patches.invalid", now)
    state = transitions.scheduled(transitions.enrolled(State(), enrolment), now + timedelta(days=1))
    StateFile(paths.state).save(replace(state, check_state=CheckState.CHECKED, last_check=now))


def test_good_settings_reach_the_running_daemon_and_bad_ones_change_nothing(installed, tmp_path):
    enrolled_until_tomorrow(installed)
    with running_daemon(installed, tmp_path):
        assert ask_daemon(installed)["tier"] == "community"
        done = installed.snap_set(tier="stable", https_proxy="http://proxy.example.com:3128")
        assert done.returncode == 0, done.stderr
        assert ask_daemon(installed)["tier"] == "stable"  # the daemon reloaded
        config_file = (installed.data / "config.json").read_bytes()

        done = installed.snap_set(check_interval="soon")
        assert done.returncode == 1
        assert (
            "livepatch configure: check-interval must be a whole number of minutes, got 'soon'."
            in done.stderr
        )
        assert (installed.data / "config.json").read_bytes() == config_file
        assert installed.config["check-interval"] == 60
        assert ask_daemon(installed)["tier"] == "stable"


def test_check_health_reports_through_snapctl(installed, daemon):
    done = installed.run_hook("check-health")
    assert done.returncode == 0, done.stderr
    assert installed.health == {
        "status": "blocked",
        "message": "Not enabled yet: run sudo livepatch enable TOKEN",
        "code": "not-enabled",
    }


def test_pre_refresh_lets_an_idle_machine_refresh(installed):
    installed.run_hook("install")
    done = installed.run_hook("pre-refresh")
    assert done.returncode == 0, done.stderr
    assert "may go ahead" in done.stderr


def test_post_refresh_passes_the_self_test_of_a_sound_revision(installed):
    installed.run_hook("install")
    assert installed.snap_set(tier="stable").returncode == 0
    new = installed.revision_copy("x2")  # snapd copies $SNAP_DATA with the services stopped
    done = new.run_hook("post-refresh")
    assert done.returncode == 0, done.stderr
    for check in ("imports", "cli", "config", "state", "keys", "daemon"):
        assert f"self-test {check}: ok" in done.stderr
    assert "revision x2 passed its self-test" in done.stderr


def test_post_refresh_fails_a_broken_revision_so_snapd_reverts(installed):
    """A revision whose daemon module is missing: what tests/spread's refresh suite installs."""
    installed.run_hook("install")
    broken = installed.revision_copy("x3")
    site = next((broken.root / "lib").glob("python3.*/site-packages"))
    (site / "livepatch" / "client" / "daemon.py").unlink()
    for cached in (site / "livepatch" / "client" / "__pycache__").glob("daemon.*"):
        cached.unlink()
    done = broken.run_hook("post-refresh")
    assert done.returncode == 1
    assert "self-test daemon: FAILED" in done.stderr
    assert "The new revision failed its self-test (" in done.stderr
    assert "snapd goes back to the previous revision." in done.stderr
    assert "revision=x3 post-refresh failed" in (broken.common / "hooks.log").read_text()


def test_remove_de_enrols_nothing_on_a_machine_never_enabled(installed):
    installed.run_hook("install")
    done = installed.run_hook("remove")
    assert done.returncode == 0, done.stderr
    assert "This machine was not enabled, so there is nothing to de-enrol." in done.stderr
