"""The real update-motd script against fragments written by livepatch.motd."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from livepatch.motd import AGO, message, render, write_fragment
from tests.unit.dbus.documents import document

SCRIPT = Path(__file__).parents[3] / "interfaces" / "update-motd" / "91-livepatch"
SHELLS = ["dash", "bash --posix", "busybox sh"]

STATES = [
    document(),
    document(Enrolled=False),
    document(State="kernel-upgrade-required"),
    document(Supported="unsupported", State="nothing-to-apply"),
    document(State="apply-failed", Errors=[{"code": "x", "message": "Signature rejected."}]),
    document(CheckState="check-failed", Errors=[{"code": "net", "message": "No answer."}]),
    document(State="applying"),
    document(State="unapplied"),
    document(State="nothing-to-apply"),
    document(State="", CheckState="needs-check", **{"Last-Check": None}),
]


def show(fragment: Path, shell: str = "dash") -> str:
    result = subprocess.run(
        [*shell.split(), str(SCRIPT)],
        env={"PATH": "/usr/bin:/bin", "LIVEPATCH_MOTD_FRAGMENT": str(fragment)},
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    assert result.stderr == ""
    return result.stdout


def fragment(tmp_path: Path, doc: dict[str, Any], *, written_ago: timedelta) -> Path:
    path = tmp_path / "motd"
    write_fragment(path, render(doc, datetime.now(UTC) - written_ago))
    return path


def checked_doc(doc: dict[str, Any], ago: timedelta) -> dict[str, Any]:
    if doc["Last-Check"] is not None:
        doc["Last-Check"] = (datetime.now(UTC) - ago).isoformat()
    return doc


@pytest.mark.parametrize("doc", STATES, ids=lambda d: str(d["Status"][0]["Livepatch"]["State"]))
@pytest.mark.parametrize("shell", SHELLS)
def test_every_state_prints_its_message(tmp_path: Path, doc: dict[str, Any], shell: str) -> None:
    doc = checked_doc(doc, timedelta(minutes=5, seconds=30))
    path = fragment(tmp_path, doc, written_ago=timedelta(minutes=5))
    expected = message(doc, checked=doc["Last-Check"] is not None)
    assert show(path, shell) == "\n" + expected.replace(AGO, "5 minutes ago") + "\n"
    assert AGO not in show(path, shell)


@pytest.mark.parametrize(
    ("age", "words"),
    [
        (timedelta(seconds=10), "just now"),
        (timedelta(minutes=1, seconds=5), "1 minute ago"),
        (timedelta(minutes=119), "119 minutes ago"),
        (timedelta(hours=5, minutes=1), "5 hours ago"),
        (timedelta(days=3, hours=1), "3 days ago"),
    ],
)
def test_check_age_is_computed_at_login(tmp_path: Path, age: timedelta, words: str) -> None:
    doc = checked_doc(document(), age)
    path = fragment(tmp_path, doc, written_ago=timedelta(0))
    assert show(path).endswith(f"3 fixes, last check {words}.\n")


def test_stale_fragment_says_so_before_the_old_text(tmp_path: Path) -> None:
    doc = checked_doc(document(), timedelta(hours=3))
    path = fragment(tmp_path, doc, written_ago=timedelta(hours=3))
    lines = show(path).splitlines()
    assert lines[1:3] == [
        "Livepatch: this status was written 3 hours ago and may be out of date;",
        "the livepatch daemon seems to have stopped (see 'livepatch status').",
    ]
    assert lines[3].endswith("last check 3 hours ago.")


def test_fragment_just_under_the_stale_limit_is_fresh(tmp_path: Path) -> None:
    doc = checked_doc(document(), timedelta(minutes=129))
    path = fragment(tmp_path, doc, written_ago=timedelta(minutes=129))
    assert "may be out of date" not in show(path)


def test_upgrade_date_line_is_printed(tmp_path: Path) -> None:
    doc = checked_doc(document(UpgradeRequiredDate="2999-01-01"), timedelta(minutes=5))
    path = fragment(tmp_path, doc, written_ago=timedelta(0))
    assert show(path).splitlines()[-1] == (
        "Kernel fixes end on 2999-01-01; upgrade the kernel before then."
    )


@pytest.mark.parametrize(
    "text",
    ["", "Livepatch: no header\n", "#livepatch-motd v1 written=soon checked=-\nhello\n"],
)
def test_foreign_or_broken_fragment_prints_nothing(tmp_path: Path, text: str) -> None:
    path = tmp_path / "motd"
    path.write_text(text)
    assert show(path) == ""


def test_missing_fragment_prints_nothing(tmp_path: Path) -> None:
    assert show(tmp_path / "absent") == ""


def test_script_is_executable_posix_sh() -> None:
    assert SCRIPT.read_text().startswith("#!/bin/sh\n")
    assert SCRIPT.stat().st_mode & 0o111 == 0o111
    assert shutil.which("dash") is not None
    subprocess.run(["dash", "-n", str(SCRIPT)], check=True)
