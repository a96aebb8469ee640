from __future__ import annotations

import json
from pathlib import Path

import pytest

from livepatch.dbus.notifications import (
    CRITICAL,
    LOW,
    NORMAL,
    STORE_LIMIT,
    Applied,
    Failed,
    NotifiedStore,
    compose,
    state_path,
    urgency,
)

SEVERITY = {"CVE-2024-1086": "high", "CVE-2023-0266": "medium", "CVE-2023-3390": "low"}


@pytest.mark.parametrize(
    ("severities", "expected"),
    [
        (["critical"], CRITICAL),
        (["HIGH"], CRITICAL),
        (["medium"], NORMAL),
        (["low"], LOW),
        (["low", "medium"], NORMAL),
        (["low", "high", "medium"], CRITICAL),
        ([], NORMAL),
        (["", "bogus"], NORMAL),
    ],
)
def test_urgency_is_the_highest_severity(severities: list[str], expected: int) -> None:
    assert urgency(severities) == expected


def test_one_patch_notification_names_its_cves_with_severity() -> None:
    note = compose([Applied("lp-3", ("CVE-2024-1086", "CVE-2023-3390"))], SEVERITY)
    assert note.summary == "2 kernel security fixes applied without reboot"
    assert note.body == "lp-3 fixes CVE-2024-1086 (high), CVE-2023-3390 (low)."
    assert note.urgency == CRITICAL


def test_low_severity_patch_is_low_urgency() -> None:
    note = compose([Applied("lp-4", ("CVE-2023-3390",))], SEVERITY)
    assert note.summary == "Kernel security fix applied without reboot"
    assert note.urgency == LOW


def test_unknown_severity_is_normal_and_unlabelled() -> None:
    note = compose([Applied("lp-5", ("CVE-2099-0001",))], {})
    assert note.body == "lp-5 fixes CVE-2099-0001."
    assert note.urgency == NORMAL


def test_a_burst_becomes_one_notification() -> None:
    note = compose(
        [
            Applied("lp-3", ("CVE-2023-3390",)),
            Applied("lp-4", ("CVE-2023-0266",)),
            Failed("lp-5", "The kernel refused the module signature."),
        ],
        SEVERITY,
    )
    assert note.summary == "Kernel fixes: 2 applied, 1 failed"
    assert note.body.splitlines() == [
        "lp-3 fixes CVE-2023-3390 (low).",
        "lp-4 fixes CVE-2023-0266 (medium).",
        "lp-5 could not be applied: The kernel refused the module signature.",
    ]
    assert note.urgency == NORMAL


def test_failure_alone() -> None:
    note = compose([Failed("lp-5", "Timed out.")], SEVERITY)
    assert note.summary == "A kernel fix could not be applied"
    assert note.urgency == NORMAL


def test_store_remembers_across_instances(tmp_path: Path) -> None:
    path = tmp_path / "state" / "livepatch" / "notified.json"
    store = NotifiedStore(path)
    assert Applied("lp-3", ()) not in store
    store.add([Applied("lp-3", ("CVE-1",)), Failed("lp-4", "no")])
    again = NotifiedStore(path)
    assert Applied("lp-3", ("CVE-other",)) in again
    assert Failed("lp-4", "no") in again
    assert Failed("lp-4", "another reason") not in again
    assert Applied("lp-4", ()) not in again
    assert [p.name for p in path.parent.iterdir()] == ["notified.json"]


def test_store_is_bounded(tmp_path: Path) -> None:
    store = NotifiedStore(tmp_path / "n.json")
    store.add(Applied(f"lp-{i}", ()) for i in range(STORE_LIMIT + 5))
    data = json.loads((tmp_path / "n.json").read_text())
    assert len(data["notified"]) == STORE_LIMIT
    assert Applied("lp-0", ()) not in NotifiedStore(tmp_path / "n.json")
    assert Applied(f"lp-{STORE_LIMIT + 4}", ()) in NotifiedStore(tmp_path / "n.json")


@pytest.mark.parametrize("text", ["", "{", "[]", '{"notified": 3}', '{"notified": [[1, 2], "x"]}'])
def test_unreadable_store_starts_empty(tmp_path: Path, text: str) -> None:
    path = tmp_path / "n.json"
    path.write_text(text)
    store = NotifiedStore(path)
    assert Applied("1", ()) not in store
    store.add([Applied("lp-1", ())])
    assert Applied("lp-1", ()) in NotifiedStore(path)


def test_state_path_follows_xdg() -> None:
    assert state_path({"XDG_STATE_HOME": "/x"}) == Path("/x/livepatch/notified.json")
    assert state_path({"HOME": "/home/u"}) == Path("/home/u/.local/state/livepatch/notified.json")
    assert state_path({"HOME": "/home/u", "XDG_STATE_HOME": ""}).is_relative_to("/home/u")
    assert state_path({}) == Path("~/.local/state/livepatch/notified.json").expanduser()
