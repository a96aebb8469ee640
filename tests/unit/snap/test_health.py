"""Which health the snap reports for which daemon status, and that snapd would take it."""

from __future__ import annotations

import pytest

from livepatch.snap.health import assess
from livepatch.snap.snapctl import Health, HealthStatus, Snapctl
from tests.snap import STANDIN_SNAPCTL


def doc(state="applied", check="checked", errors=(), enrolled=True):
    return {
        "Enrolled": enrolled,
        "Status": [
            {"Kernel": "6.1.0-56-amd64", "Livepatch": {"State": state, "CheckState": check}}
        ],
        "Errors": [{"code": c, "message": m} for c, m in errors],
    }


DENIED = (
    "access-denied",
    "Permission to access /sys/kernel/livepatch was denied; run as root, or, inside the "
    "snap, connect the system-files interface that grants it.",
)

CASES = [
    (None, HealthStatus.ERROR, "daemon-not-answering"),
    (doc(enrolled=False), HealthStatus.BLOCKED, "not-enabled"),
    (doc(), HealthStatus.OKAY, ""),
    (doc(state="nothing-to-apply"), HealthStatus.OKAY, ""),
    (doc(state="apply-failed", errors=[DENIED]), HealthStatus.BLOCKED, "access-denied"),
    (
        doc(state="apply-failed", errors=[("transition-stalled", "The patch stalled.")]),
        HealthStatus.ERROR,
        "transition-stalled",
    ),
    (doc(state="apply-failed"), HealthStatus.ERROR, "apply-failed"),
    (
        doc(check="check-failed", errors=[("service-unreachable", "Cannot reach it.")]),
        HealthStatus.WAITING,
        "service-unreachable",
    ),
    (doc(state="kernel-upgrade-required"), HealthStatus.BLOCKED, "kernel-upgrade-required"),
    ({"Enrolled": True, "Status": "garbage", "Errors": {}}, HealthStatus.OKAY, ""),
    (doc(state="apply-failed", errors=[("x", "boom")]), HealthStatus.ERROR, "apply-failed"),
    (doc(errors=[("access-denied", "no")]), HealthStatus.BLOCKED, "access-denied"),
]


@pytest.mark.parametrize(("document", "status", "code"), CASES)
def test_assess(document, status, code):
    health = assess(document)
    assert (health.status, health.code) == (status, code)


@pytest.mark.parametrize(("document", "status", "code"), CASES)
def test_snapd_accepts_every_health_we_report(document, status, code, tmp_path, monkeypatch):
    monkeypatch.setenv("SNAPCTL_STATE", str(tmp_path / "state.json"))
    Snapctl(str(STANDIN_SNAPCTL)).set_health(assess(document))
    import json

    saved = json.loads((tmp_path / "state.json").read_text())["health"]
    assert saved["status"] == status.value and saved["code"] == code
    assert len(saved["message"]) <= 70


def test_a_long_message_is_cut_to_seventy_characters_like_snapd_cuts_it():
    health = assess(doc(state="apply-failed", errors=[DENIED]))
    argv = health.argv()
    assert len(argv[2]) == 70 and argv[2].endswith("…")
    assert argv[2].startswith("Permission to access /sys/kernel/livepatch was denied")


@pytest.mark.parametrize(
    ("status", "message", "code"),
    [
        (HealthStatus.OKAY, "all good", ""),
        (HealthStatus.OKAY, "", "fine"),
        (HealthStatus.ERROR, "", ""),
        (HealthStatus.ERROR, "short", ""),
        (HealthStatus.BLOCKED, "a long enough message", "Bad_Code"),
        (HealthStatus.BLOCKED, "a long enough message", "ab"),
    ],
)
def test_health_refuses_what_snapd_refuses(status, message, code):
    with pytest.raises(ValueError):
        Health(status, message, code)
