"""Which health the snap reports for which daemon status, and that snapd would take it."""

from __future__ import annotations

from pathlib import Path

import pytest

from livepatch.snap.health import HealthReporter, assess, daemon_reporter
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
    "snap, connect its livepatch-sysfs plug (sudo snap connect livepatch:livepatch-sysfs).",
)

NOT_PERMITTED = (
    "not-permitted",
    "The kernel did not permit loading module livepatch_cmdline_v1 (EPERM (Operation not "
    "permitted)); run as root with CAP_SYS_MODULE, or, inside the snap, connect its "
    "kernel-module-control plug (sudo snap connect livepatch:kernel-module-control).",
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
    (doc(state="apply-failed", errors=[NOT_PERMITTED]), HealthStatus.BLOCKED, "not-permitted"),
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
    long = ("apply-failed", "The kernel refused the module: " + "x" * 80)
    argv = assess(doc(state="apply-failed", errors=[long])).argv()
    assert len(argv[2]) == 70 and argv[2].endswith("…")
    assert argv[2].startswith("The kernel refused the module: xxx")


def test_a_denied_file_names_the_plug_to_connect_within_seventy_characters():
    health = assess(doc(state="apply-failed", errors=[DENIED]))
    assert health.argv() == [
        "set-health",
        "blocked",
        "Missing plug; run: snap connect livepatch:livepatch-sysfs",
        "--code=access-denied",
    ]


def test_a_denied_file_blocks_before_enrolment_is_even_known():
    """The daemon's blocked document (livepatch.client.blocked): nothing enrolled yet."""
    denied = {
        "Enrolled": False,
        "Status": [],
        "Errors": [
            {
                "code": "access-denied",
                "message": "Permission to access /proc/sys/kernel/arch was denied; run as "
                "root, or, inside the snap, connect its kernel-state plug (sudo snap "
                "connect livepatch:kernel-state).",
            }
        ],
    }
    health = assess(denied)
    assert health.status is HealthStatus.BLOCKED
    assert health.message == "Missing plug; run: snap connect livepatch:kernel-state"


def test_the_daemon_reports_health_only_when_the_verdict_changes():
    told: list[Health] = []
    reporter = HealthReporter(told.append)
    blocked = doc(state="apply-failed", errors=[DENIED])
    reporter(blocked)
    reporter(blocked)
    reporter(doc())
    reporter(doc())
    assert [h.status for h in told] == [HealthStatus.BLOCKED, HealthStatus.OKAY]


def test_the_reporter_exists_only_inside_the_snap():
    assert daemon_reporter({}) is None
    inside = {"SNAP": "/snap/livepatch/x1", "SNAP_NAME": "livepatch", "SNAP_DATA": "/var/x1"}
    reporter = daemon_reporter(inside)
    assert reporter is not None and reporter.record == Path("/var/x1/health")


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


def test_the_check_health_hook_reports_the_daemons_recorded_verdict(tmp_path):
    """hooks/check-health (shell) reports what the daemon recorded, or that it is starting."""
    import json
    import os
    import subprocess

    from tests.snap import STANDIN_SNAPCTL

    hook = Path(__file__).resolve().parents[3] / "hooks" / "check-health"
    env = {
        **os.environ,
        "SNAP_DATA": str(tmp_path),
        "SNAPCTL_STATE": str(tmp_path / "snapctl.json"),
        "PATH": f"{STANDIN_SNAPCTL.parent}:{os.environ['PATH']}",
    }

    def run() -> dict:
        subprocess.run(["sh", str(hook)], env=env, check=True, capture_output=True)
        return json.loads((tmp_path / "snapctl.json").read_text())["health"]

    assert run() == {
        "status": "waiting",
        "message": "The daemon is starting; see: snap logs livepatch.livepatchd",
        "code": "daemon-starting",
    }
    told: list[Health] = []
    reporter = HealthReporter(told.append, tmp_path / "health")
    reporter(doc(state="apply-failed", errors=[DENIED]))
    assert (tmp_path / "health").read_text() == (
        "blocked\naccess-denied\nMissing plug; run: snap connect livepatch:livepatch-sysfs\n"
    )
    assert run() == {
        "status": "blocked",
        "message": "Missing plug; run: snap connect livepatch:livepatch-sysfs",
        "code": "access-denied",
    }
    reporter(doc())
    assert run() == {"status": "okay", "message": "", "code": ""}


@pytest.mark.parametrize(
    ("error", "plug"), [(DENIED, "livepatch-sysfs"), (NOT_PERMITTED, "kernel-module-control")]
)
def test_the_health_message_names_the_plug_to_connect(error, plug):
    health = assess(doc(state="apply-failed", errors=[error]))
    assert health.message == f"Missing plug; run: snap connect livepatch:{plug}"
