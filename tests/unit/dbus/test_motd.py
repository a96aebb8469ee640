from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from livepatch.motd import AGO, DEFAULT_PATH, fragment_path, message, render, write_fragment
from tests.unit.dbus.documents import document

NOW = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
KERNEL = "6.1.0-56-amd64"
FAILED = [{"code": "signature-rejected", "message": "The kernel rejected the module signature"}]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            document(),
            f"Livepatch: kernel {KERNEL} is fully patched — 3 fixes, last check {AGO}.",
        ),
        (
            document(Enrolled=False),
            "Livepatch is not enabled on this machine; run 'sudo livepatch enable TOKEN' "
            "to receive kernel fixes without reboot.",
        ),
        (
            document(State="kernel-upgrade-required"),
            f"Livepatch: kernel {KERNEL} gets no more fixes; upgrade the kernel and reboot "
            "to stay protected.",
        ),
        (
            document(Supported="kernel-upgrade-required", State="nothing-to-apply"),
            f"Livepatch: kernel {KERNEL} gets no more fixes; upgrade the kernel and reboot "
            "to stay protected.",
        ),
        (
            document(Supported="unsupported", State="nothing-to-apply"),
            f"Livepatch does not cover kernel {KERNEL}; use a supported kernel to get fixes.",
        ),
        (
            document(State="apply-failed", Errors=FAILED),
            f"Livepatch: applying a fix to kernel {KERNEL} failed: "
            "The kernel rejected the module signature.",
        ),
        (
            document(State="apply-failed"),
            f"Livepatch: applying a fix to kernel {KERNEL} failed: "
            "see 'livepatch status' for the reason.",
        ),
        (
            document(
                CheckState="check-failed",
                Errors=[{"code": "network", "message": "The patch service did not answer."}],
            ),
            f"Livepatch: the check for kernel fixes failed (last check {AGO}): "
            "The patch service did not answer.",
        ),
        (
            document(State="applying"),
            f"Livepatch: applying 3 fixes to kernel {KERNEL} now.",
        ),
        (
            document(State="unapplied"),
            f"Livepatch: fixes for kernel {KERNEL} are not applied yet, last check {AGO}.",
        ),
        (
            document(State="nothing-to-apply", Fixes=[]),
            f"Livepatch: kernel {KERNEL} needs no fixes so far, last check {AGO}.",
        ),
        (
            document(State="", CheckState="needs-check", **{"Last-Check": None}),
            f"Livepatch: kernel {KERNEL} has not been checked for fixes yet.",
        ),
    ],
)
def test_message_for_each_state(doc: dict[str, Any], expected: str) -> None:
    checked = doc["Last-Check"] is not None
    assert message(doc, checked=checked) == expected


def test_only_patched_fixes_count() -> None:
    doc = document()
    doc["Status"][0]["Livepatch"]["Fixes"][0]["Patched"] = False
    assert "2 fixes" in message(doc, checked=True)


def test_one_fix_is_singular() -> None:
    doc = document()
    del doc["Status"][0]["Livepatch"]["Fixes"][1:]
    assert "— 1 fix," in message(doc, checked=True)


def test_fragment_header_carries_written_and_checked_times() -> None:
    text = render(document(), NOW)
    header, body = text.split("\n", 1)
    assert header == "#livepatch-motd v1 written=1768046400 checked=1768046100"
    assert body.endswith(".\n")


def test_never_checked_has_no_check_time() -> None:
    text = render(document(**{"Last-Check": None}, State="unapplied"), NOW)
    assert text.splitlines()[0].endswith("checked=-")
    assert "no check yet" in text


def test_upcoming_upgrade_date_adds_a_line() -> None:
    text = render(document(UpgradeRequiredDate="2026-03-01"), NOW)
    assert text.splitlines()[-1] == (
        "Kernel fixes end on 2026-03-01; upgrade the kernel before then."
    )
    assert len(render(document(UpgradeRequiredDate="2025-03-01"), NOW).splitlines()) == 2


@pytest.mark.parametrize("doc", [{}, {"Status": "x", "Enrolled": True}, {"Last-Check": "x"}])
def test_garbage_documents_still_render(doc: dict[str, Any]) -> None:
    text = render(doc, NOW)
    assert text.startswith("#livepatch-motd v1 written=1768046400 checked=-\n")
    assert text.count("\n") == 2


def test_write_fragment_replaces_atomically_and_is_world_readable(tmp_path: Path) -> None:
    path = tmp_path / "run" / "livepatch" / "motd"
    write_fragment(path, "one\n")
    inode = path.stat().st_ino
    write_fragment(path, "two\n")
    assert path.read_text() == "two\n"
    assert path.stat().st_ino != inode
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert os.listdir(path.parent) == ["motd"]


def test_fragment_path_default_and_override() -> None:
    assert fragment_path({}) == DEFAULT_PATH == Path("/run/livepatch/motd")
    assert fragment_path({"LIVEPATCH_MOTD_FRAGMENT": "/tmp/m"}) == Path("/tmp/m")
