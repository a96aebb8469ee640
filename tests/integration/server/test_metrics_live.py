"""The Prometheus counters move with what happens, on a live server over SQLite and PostgreSQL.

The server's own periodic engine (every half second here) promotes a
healthy patch and halts a failing one; enrolments, check-ins and reports
come over HTTPS.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.server.live import LiveServer, live_server

KERNEL = "6.1.0-56-amd64"


@pytest.fixture(params=["sqlite", "postgres"])
def engine_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    data = tmp_path / "data"
    data.mkdir()
    (data / "config.toml").write_text(
        "[server]\nengine_interval_seconds = 0.5\n"
        "[rollout]\ncanary_soak_hours = 0\nminimum_sample = 1\n"
    )
    if request.param == "sqlite":
        url = f"sqlite:///{data}/livepatch.db"
    else:
        url = request.getfixturevalue("postgres").create_database()
    with live_server(data, url) as server:
        yield server


def counter(live: LiveServer, sample: str) -> float:
    """The value of one sample line (name and labels) of /metrics; 0 when absent."""
    text = live.client().get("/metrics").text
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def publish(live: LiveServer, module: Path, kernel: str, *extra: str) -> str:
    published = live.admin_json(
        "publish",
        str(module),
        "--kernel",
        kernel,
        "--cve",
        "CVE-2024-1086",
        "--severity",
        "high",
        "--description",
        "d",
        *extra,
    )
    return str(published["patch_id"])


@pytest.mark.slow
def test_counters_for_enrolments_check_ins_outcomes_promotions_and_halts(
    engine_server: LiveServer, module_file: Path
) -> None:
    live = engine_server
    token = live.admin_json("tokens", "create", "--machines", "5")["token"]
    client = live.client()
    machines = []
    for _ in range(2):
        body = {
            "token": token,
            "machine_id": uuid.uuid4().hex,
            "hostname": "h",
            "kernel": KERNEL,
            "architecture": "amd64",
        }
        response = client.post("/v1/enrol", json=body)
        assert response.status_code == 201, response.text
        machines.append(response.json())
    refused = client.post("/v1/enrol", json={**body, "token": "0" * 32})
    assert refused.status_code == 401
    assert counter(live, "livepatch_enrolments_total") == 2
    assert counter(live, 'livepatch_enrolment_refusals_total{code="unknown-token"}') == 1

    for machine in machines:
        auth = {"Authorization": f"Bearer {machine['credential']}"}
        for _ in range(2):
            assert client.get("/v1/metadata/timestamp.json", headers=auth).status_code == 200
    assert counter(live, "livepatch_checkins_total") == 4

    healthy = publish(live, module_file, KERNEL)
    # A day of soak keeps the failing patch in canary until the engine sees its report.
    failing = publish(live, module_file, "6.1.0-57-amd64", "--canary-soak-hours", "24")
    for machine, patch, result in (
        (machines[0], healthy, "applied"),
        (machines[1], failing, "failed"),
    ):
        response = client.post(
            f"/v1/machines/{machine['machine_id']}/reports",
            json={
                "patch_id": patch,
                "kernel": KERNEL,
                "result": result,
                "errno": None if result == "applied" else 1,
                "reason": None,
                "duration_ms": 10,
                "taint": 0,
            },
            headers={"Authorization": f"Bearer {machine['credential']}"},
        )
        assert response.status_code == 202, response.text
    assert counter(live, 'livepatch_reports_total{result="applied"}') == 1
    assert counter(live, 'livepatch_reports_total{result="failed"}') == 1

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        halted = counter(live, 'livepatch_halts_total{stage="canary",trigger="automatic"}')
        promoted = counter(live, 'livepatch_promotions_total{stage="moderate",trigger="automatic"}')
        if halted and promoted:
            break
        time.sleep(0.5)
    assert counter(live, 'livepatch_halts_total{stage="canary",trigger="automatic"}') == 1
    assert counter(live, 'livepatch_promotions_total{stage="moderate",trigger="automatic"}') >= 1
    shown = live.admin_json("patches", "show", failing)
    assert shown["rollout"]["halted"] is True and shown["rollout"]["stage"] == "canary"
    assert "1 of 1 machines failed" in shown["rollout"]["halt_reason"]
    assert live.admin_json("patches", "show", healthy)["rollout"]["stage"] != "canary"
    gauges = live.client().get("/metrics").text
    assert 'livepatch_patches{halted="true",stage="canary"} 1' in gauges
    assert 'livepatch_machines{tier="community"} 2' in gauges
