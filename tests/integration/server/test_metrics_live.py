"""The Prometheus counters move with what happens, on a live server over SQLite and PostgreSQL.

The server's own periodic engine (every half second here) promotes a
healthy patch and halts a failing one; enrolments, check-ins and reports
come over HTTPS. With several worker processes, every scrape shows the
server's totals, whichever worker answers it.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.server.live import (
    LiveServer,
    count,
    live_server,
    wait_for_counts,
    wait_for_workers,
    worker_counts,
)

KERNEL = "6.1.0-56-amd64"
FAILING_KERNEL = "6.1.0-57-amd64"


@pytest.fixture(params=["sqlite", "postgres"])
def engine_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    data = tmp_path / "data"
    data.mkdir()
    (data / "config.toml").write_text(
        "[server]\nengine_interval_seconds = 0.5\n"
        "[rollout]\ncanary_soak_hours = 0\nminimum_sample = 1\nminimum_applied = 1\n"
        # Every machine is in every stage, so that each report counts.
        "canary_percentage = 100.0\nmoderate_percentage = 100.0\n"
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
        "--no-preflight",
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
    for kernel in (KERNEL, FAILING_KERNEL):
        body = {
            "token": token,
            "machine_id": uuid.uuid4().hex,
            "hostname": "h",
            "kernel": kernel,
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
    failing = publish(live, module_file, FAILING_KERNEL, "--canary-soak-hours", "24")
    for machine, patch, kernel, result in (
        (machines[0], healthy, KERNEL, "applied"),
        (machines[1], failing, FAILING_KERNEL, "failed"),
    ):
        response = client.post(
            f"/v1/machines/{machine['machine_id']}/reports",
            json={
                "patch_id": patch,
                "kernel": kernel,
                "result": result,
                "health": "healthy" if result == "applied" else None,
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


def test_every_scrape_shows_the_totals_of_all_worker_processes(
    tmp_path: Path, database_url: str
) -> None:
    """Two workers each count what they serve; /metrics sums both, whichever answers it.

    Every request (and scrape) is on a new connection, which either worker
    may accept. Rounds go on until each worker has served some of each kind.
    """
    with live_server(tmp_path / "data", database_url, workers=2) as server:
        static = wait_for_workers(server)
        token = server.admin_json("tokens", "create", "--machines", "200")["token"]

        def new_connection() -> httpx.Client:
            return httpx.Client(base_url=server.url, verify=server.verify(), timeout=60)

        def enrol(_: int) -> dict[str, Any]:
            body = {
                "token": token,
                "machine_id": uuid.uuid4().hex,
                "hostname": "h",
                "kernel": KERNEL,
                "architecture": "amd64",
            }
            with new_connection() as client:
                response = client.post("/v1/enrol", json=body)
            assert response.status_code == 201, response.text
            enrolled: dict[str, Any] = response.json()
            return enrolled

        def check_in(machine: dict[str, Any]) -> None:
            auth = {"Authorization": f"Bearer {machine['credential']}"}
            with new_connection() as client:
                response = client.get("/v1/metadata/timestamp.json", headers=auth)
            assert response.status_code == 200, response.text

        machines: list[dict[str, Any]] = []
        check_ins = 0
        with ThreadPoolExecutor(max_workers=8) as pool:
            for _ in range(10):
                machines += pool.map(enrol, range(8))
                for _ in range(2):
                    list(pool.map(check_in, machines[-8:]))
                check_ins += 16
                workers = wait_for_counts(
                    server,
                    {
                        ("livepatch_enrolments_total", ()): len(machines),
                        ("livepatch_checkins_total", ()): check_ins,
                    },
                )
                if all(
                    count(w, "livepatch_enrolments_total") and count(w, "livepatch_checkins_total")
                    for w in workers
                ):
                    break
        # Per-worker evidence: two processes, each served some enrolments and check-ins.
        assert len(workers) == 2, workers
        for worker in workers:
            assert 0 < count(worker, "livepatch_enrolments_total") < len(machines), workers
            assert 0 < count(worker, "livepatch_checkins_total") < check_ins, workers
        assert sum(count(w, "livepatch_static_requests_total", status="200") for w in workers) == (
            static + check_ins
        )
        for _ in range(12):
            with new_connection() as client:
                text = client.get("/metrics").text
            assert sample(text, "livepatch_enrolments_total") == len(machines)
            assert sample(text, "livepatch_checkins_total") == check_ins
            assert sample(text, 'livepatch_static_requests_total{status="200"}') == (
                static + check_ins
            )
            assert sample(text, 'livepatch_machines{tier="community"}') == len(machines)
    # The workers' files outlive them (until the next start), so totals never drop.
    assert sum(count(w, "livepatch_enrolments_total") for w in worker_counts(server)) == len(
        machines
    )


def sample(text: str, line: str) -> float:
    found = re.search(rf"^{re.escape(line)} (\S+)$", text, re.MULTILINE)
    assert found is not None, f"no {line} in {text}"
    return float(found.group(1))
