"""The commands people and monitoring run most import only what they need.

Each case runs the real `livepatch` entry point in a subprocess under
``-X importtime`` and reads which modules it imported. Every status path,
``--help`` and ``config`` must leave out requests, cryptography and tuf;
the fast paths (bench/RESULTS.md: at most 1.5x a bare Python's start-up)
must also leave out what costs more than their whole budget.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from livepatch.client import config, quickstatus, statuscache
from livepatch.client.paths import Paths
from livepatch.client.state import CheckState, Enrolment, State, StateFile
from tests.unit.client.test_quickstatus import T0

ENTRY_POINT = Path(sys.executable).with_name("livepatch")
HEAVY = {"requests", "cryptography", "tuf", "dbus_fast", "asyncio"}
# Any of these costs a large part of the fast path's budget (re and enum come with
# json, argparse, pathlib, logging and PyYAML).
OVER_BUDGET = HEAVY | {
    "yaml",
    "re",
    "enum",
    "json",
    "argparse",
    "typing",
    "dataclasses",
    "logging",
    "pathlib",
    "livepatch.kernel",
    "livepatch.client.commands",
    # Taken off the fast paths on 2026-12-05 (about 0.1 and 0.5 ms of a 12 ms start-up):
    # `from __future__ import annotations` imports __future__ at run time, and the
    # not-enrolled answer needs one sentence, not every client error class.
    "__future__",
    "livepatch.errors",
    "livepatch.client.errors",
}
STATUS_MODULES = {
    "_json",
    "errno",
    "fcntl",
    "livepatch",
    "livepatch.cli",
    "livepatch.client",
    "livepatch.client.jsonlite",
    "livepatch.client.locks",
    "livepatch.client.quickconfig",
    "livepatch.client.quickstatus",
    "livepatch.client.render",
    "livepatch.client.statuscache",
    "livepatch.client.statusdoc",
    "livepatch.client.yamllite",
    "livepatch.kernelnames",
}
"""Every module a fast path may import beyond what a bare `python -c pass` does."""
ALLOWED = {
    "status": STATUS_MODULES,
    "config": {
        "_json",
        "livepatch",
        "livepatch.cli",
        "livepatch.client",
        "livepatch.client.jsonlite",
        "livepatch.client.quickconfig",
        "livepatch.client.statuscache",
    },
    "--help": {"livepatch", "livepatch.cli"},
}
NOBODY = 65534


def imported(state_dir: Path, *argv: str, user: int | None = None) -> set[str]:
    """The modules `livepatch ARGV` imports (argv ["-c", "pass"]: a bare start-up's)."""
    script = [] if argv[:1] == ("-c",) else [str(ENTRY_POINT)]
    command = [sys.executable, "-X", "importtime", *script, *argv]
    if user is not None:  # as a user, without the right to read root's files
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    result = subprocess.run(
        command,
        env={"LIVEPATCH_STATE_DIR": str(state_dir), "PATH": os.environ["PATH"], "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode in (0, 1), result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    assert lines, result.stderr
    return {line.rsplit("|", 1)[1].strip() for line in lines[1:]}


def enrolled(state_dir: Path, kernel: str | None = None) -> Path:
    paths = Paths(state_dir)
    paths.ensure()
    state_dir.chmod(0o755)
    config.save(paths.config, config.Config(remote_server="https://p.test", tier="stable"))
    StateFile(paths.state).save(
        State(
            enrolment=Enrolment("m-1", "community", "https://p.test", T0),
            kernel=kernel or os.uname().release,
            check_state=CheckState.CHECKED,
            last_check=T0,
        )
    )
    return state_dir


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A directory other users may enter (pytest's own are root's alone)."""
    with tempfile.TemporaryDirectory(prefix="livepatch-imports.") as name:
        os.chmod(name, 0o755)
        yield Path(name)


ARGV = [
    ["status"],
    ["status", "--format", "json"],
    ["status", "--format", "yaml"],
    ["status", "--format", "humane"],
    ["status", "--verbose"],
    ["--help"],
    ["config"],
]


@pytest.mark.parametrize("argv", ARGV, ids=" ".join)
@pytest.mark.parametrize("state", ["not enrolled", "enrolled", "enrolled, as a user"])
def test_fast_paths_stay_within_their_budget(tmp_path: Path, state: str, argv: list[str]) -> None:
    user = NOBODY if os.geteuid() == 0 and "user" in state else None
    if state == "not enrolled":
        modules = imported(tmp_path / "none", *argv)
    else:
        modules = imported(enrolled(tmp_path / "state"), *argv, user=user)
    assert modules & OVER_BUDGET == set()
    bare = imported(tmp_path, "-c", "pass", user=user)  # the same interpreter and site
    assert modules - bare <= ALLOWED[argv[0]]
    if argv[0] == "status":
        assert "livepatch.client.quickstatus" in modules


@pytest.mark.parametrize("user", [None, NOBODY], ids=["as root", "as a user"])
def test_a_cached_status_needs_none_of_the_builders_imports(
    tmp_path: Path, user: int | None
) -> None:
    state_dir = str(enrolled(tmp_path / "state"))
    key = statuscache.inputs(state_dir)  # what the daemon or root's full path stores
    doc = quickstatus.build(state_dir)
    assert doc is not None
    statuscache.save(state_dir, key, doc)
    modules = imported(Path(state_dir), "status", "--format", "json", user=user)
    assert "livepatch.client.statuscache" in modules
    assert modules & {"livepatch.client.quickstatus", "livepatch.client.statusdoc"} == set()
    assert modules & OVER_BUDGET == set()


def test_the_full_status_path_leaves_the_network_and_crypto_out(tmp_path: Path) -> None:
    # A record of another kernel (as after a reboot) needs reconciling: the full path.
    modules = imported(enrolled(tmp_path / "state", kernel="0.0.0-other"), "status")
    assert "livepatch.client.commands" in modules
    assert modules & HEAVY == set()
