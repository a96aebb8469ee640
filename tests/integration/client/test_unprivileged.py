"""`livepatch status` and `livepatch config` as an ordinary user (uid 65534), for real.

The venv's interpreter lives under /root (mode 0700), so the unprivileged
process runs Debian's /usr/bin/python3 on the source tree: those commands
import nothing outside the standard library, which this also shows.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from livepatch.client import commands
from livepatch.client import config as settings
from livepatch.client.paths import Paths
from livepatch.client.state import CheckState, Enrolment, State, StateFile

SRC = Path(__file__).resolve().parents[3] / "src"
NOBODY = 65534


def as_nobody(paths: Paths, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            "import sys; from livepatch.cli import main; sys.exit(main(sys.argv[1:]))",
            *argv,
        ],
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(SRC),
            "LIVEPATCH_STATE_DIR": str(paths.root),
            "NO_COLOR": "1",
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.fixture
def paths() -> Iterator[Paths]:
    # pytest's tmp_path is private to root; this directory is traversable by all.
    base = Path(tempfile.mkdtemp(prefix="livepatch-unprivileged."))
    base.chmod(0o755)
    paths = Paths(base / "state")
    paths.ensure()
    now = datetime.now(UTC)
    StateFile(paths.state).save(
        State(
            enrolment=Enrolment("m-unprivileged", "stable", "https://patches.test", now),
            kernel=os.uname().release,
            check_state=CheckState.CHECKED,
            last_check=now,
            next_check=now + timedelta(hours=1),
        )
    )
    try:
        yield paths
    finally:
        shutil.rmtree(base)


def test_config_shows_settings_without_secrets(paths):
    commands.set_config(
        paths,
        [
            "remote-server=https://patches.test",
            "https-proxy=http://alice:s3cret@proxy.test:3128",
            "check-interval=15",
        ],
    )
    result = as_nobody(paths, "config")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "remote-server: https://patches.test" in lines
    assert "https-proxy: http://alice:REDACTED@proxy.test:3128" in lines
    assert "check-interval: 15" in lines
    assert "s3cret" not in result.stdout + result.stderr
    assert result.stderr == (
        "livepatch: passwords are shown as REDACTED; run `sudo livepatch config` to see them.\n"
    )


def test_config_without_secrets_prints_no_note(paths):
    commands.set_config(paths, ["remote-server=https://patches.test"])
    result = as_nobody(paths, "config")
    assert (result.returncode, result.stderr) == (0, "")
    assert "remote-server: https://patches.test" in result.stdout.splitlines()


def test_changing_settings_needs_root_in_one_sentence(paths):
    result = as_nobody(paths, "config", "check-interval=5")
    assert result.returncode == 4
    assert result.stderr == (
        "livepatch: `livepatch config` needs root to change settings; run it again with sudo.\n"
    )
    assert settings.load(paths.config).check_interval == settings.DEFAULT_CHECK_INTERVAL


def test_settings_saved_without_a_public_copy_say_they_need_root(paths):
    commands.set_config(paths, ["remote-server=https://patches.test"])
    paths.config_public.unlink()
    result = as_nobody(paths, "config")
    assert result.returncode == 4 and result.stdout == ""
    assert result.stderr == (
        "livepatch: The settings are readable by root only; "
        "run `sudo livepatch config` to see them.\n"
    )


def test_status_works_without_root_and_uses_the_public_tier(paths):
    commands.set_config(paths, ["tier=community", "https-proxy=http://a:b@proxy.test:1"])
    result = as_nobody(paths, "status", "--format", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["Enrolled"] is True and doc["Machine-Id"] == "m-unprivileged"
    assert doc["tier"] == "community"  # the config override, read from the public copy
    assert doc["Daemon-Running"] is False


def test_refresh_needs_root(paths):
    result = as_nobody(paths, "refresh")
    assert result.returncode == 4
    assert "needs root" in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize("argv", [("status",), ("status", "--format", "json")])
def test_status_in_a_state_directory_only_root_enters_says_so_in_one_sentence(paths, argv):
    paths.root.chmod(0o700)  # the fast path cannot read it either: the full path answers
    result = as_nobody(paths, *argv)
    assert (result.returncode, result.stdout) == (4, "")
    assert result.stderr == (
        f"livepatch: The state in {paths.root} is readable by root only; "
        "run `sudo livepatch status` to see it.\n"
    )
