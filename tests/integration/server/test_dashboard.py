"""The dashboard in a real browser (Debian's chromium, headless, via playwright-core),
and its session and CSRF rules over real TLS.

Screenshots go to $LIVEPATCH_ARTIFACTS/dashboard (default build/artifacts/dashboard).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.server.conftest import module_named
from tests.integration.server.live import LiveServer, live_server

ROOT = Path(__file__).parents[3]
DRIVER = Path(__file__).with_name("dashboard.cjs")
PLAYWRIGHT_CORE = Path.home() / ".cache/livepatch/node/playwright-core-1.65.2/node_modules"
ARTIFACTS = Path(os.environ.get("LIVEPATCH_ARTIFACTS", ROOT / "build" / "artifacts")) / "dashboard"
REVOKE_REASON = "oops: soft lockups in nf_tables under load"
FLEET = [
    # (machine, kernel, report for the kernel's patch or None)
    ("web-01", "6.1.0-56-amd64", "applied"),
    ("web-02", "6.1.0-56-amd64", "applied"),
    ("web-03", "6.1.0-56-amd64", "failed"),
    ("db-01", "6.1.0-56-amd64", "applied"),
    ("db-02", "6.1.0-57-amd64", "applied"),
    ("cache-01", "6.1.0-57-amd64", None),
    ("batch-01", "6.1.0-50-amd64", None),
    ("edge-01", "5.15.0-91-generic", "applied"),
]


def publish(client: httpx.Client, kernel: str, name: str) -> str:
    response = client.post(
        "/v1/admin/patches",
        json={
            "module_base64": base64.b64encode(module_named(name)).decode(),
            "kernels": [kernel],
            "cves": ["CVE-2024-1086", "CVE-2024-26581"],
            "severity": "high",
            "description": "nf_tables: use-after-free",
            # Every machine admitted at canary: the service counts reports only from those.
            "overrides": {"canary_percentage": 100.0, "moderate_percentage": 100.0},
        },
    )
    assert response.status_code == 201, response.text
    return str(response.json()["patch_id"])


def seed(live: LiveServer, operator: httpx.Client) -> dict[str, str]:
    """A small fleet: three kernels with patches, one without, applied and failed reports."""
    patches = {
        kernel: publish(operator, kernel, f"livepatch_ui_{index}")
        for index, kernel in enumerate(("6.1.0-56-amd64", "6.1.0-57-amd64", "5.15.0-91-generic"))
    }
    # Community tier: stable-tier machines are never canaries, so their reports would not count.
    token = live.admin_json("tokens", "create", "--machines", "50")["token"]
    client = live.client(headers={"User-Agent": "livepatch/0.9.0"})
    for machine, kernel, result in FLEET:
        enrolled = client.post(
            "/v1/enrol",
            json={
                "token": token,
                "machine_id": machine,
                "hostname": f"{machine}.example.net",
                "kernel": kernel,
                "architecture": "amd64",
            },
        )
        assert enrolled.status_code == 201, enrolled.text
        if result is not None:
            reported = client.post(
                f"/v1/machines/{machine}/reports",
                headers={"Authorization": f"Bearer {enrolled.json()['credential']}"},
                json={
                    "patch_id": patches[kernel],
                    "kernel": kernel,
                    "result": result,
                    "reason": "livepatch: transition timed out" if result == "failed" else None,
                    "duration_ms": 120,
                    "taint": 0,
                },
            )
            assert reported.status_code == 202, reported.text
    return patches


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Any:
    data = tmp_path_factory.mktemp("dashboard") / "data"
    with live_server(data, f"sqlite:///{data}/livepatch.db") as live:
        keys = {
            role: live.admin_json("admins", "create", f"{role}-ui", "--role", role)["key"]
            for role in ("viewer", "operator")
        }
        operator = live.client(headers={"X-Admin-Key": keys["operator"]})
        patches = seed(live, operator)
        yield live, keys, patches, operator


def test_log_in_see_the_fleet_and_halt_a_rollout_in_chromium(
    dashboard: Any, tmp_path: Path
) -> None:
    live, keys, patches, operator = dashboard
    assert shutil.which("chromium") == "/usr/bin/chromium" or Path("/usr/bin/chromium").exists()
    assert (PLAYWRIGHT_CORE / "playwright-core").is_dir(), "run .ci/setup"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    target = patches["6.1.0-56-amd64"]
    revoke = patches["5.15.0-91-generic"]
    plan = tmp_path / "plan.json"  # holds the keys: not an artifact
    plan.write_text(
        json.dumps(
            {
                "url": live.url,
                "key": keys["operator"],
                "viewerKey": keys["viewer"],
                "halt": target,
                "revoke": revoke,
                "revokeReason": REVOKE_REASON,
                "artifacts": str(ARTIFACTS),
            }
        )
    )
    result = subprocess.run(
        ["node", str(DRIVER), str(plan)],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PLAYWRIGHT_CORE": str(PLAYWRIGHT_CORE / "playwright-core")},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])

    assert seen["loginUrl"].endswith("/ui/login")
    assert "not a live admin API key" in seen["badLogin"]
    assert "8 Machines" in seen["cards"]
    assert "3 Live patches" in seen["cards"]
    assert seen["charts"] == [
        "Machines by kernel",
        "Machines by patch",
        "Machines by state",
        "Last check-in",
    ]
    assert seen["fleetLoadMs"] < 1000, seen["fleetLoadMs"]
    assert seen["statusBefore"] == "rolling out"
    assert seen["statusAfter"] == "HALTED" and seen["haltButtons"] == 1
    assert seen["failedMachines"] == ["web-03"]
    assert seen["machineTitle"] == "Machine web-03"
    # Revoking: an empty reason does not submit; a confirmation page comes first.
    assert seen["revokeEmptyReasonBlocked"] is True
    assert seen["urlAfterEmptyRevoke"] == f"{live.url}/ui/rollouts"
    assert seen["confirmTitle"] == f"Revoke {revoke}?"
    assert seen["confirmReason"] == REVOKE_REASON
    assert seen["revokedStatus"] == "REVOKED"
    assert seen["revokedReason"] == REVOKE_REASON
    assert seen["revokedButtons"] == 0  # final: nothing to resume or withdraw
    newest, previous = seen["auditRows"]
    assert newest[1:6] == ["operator-ui", "127.0.0.1", "patch.revoke", revoke, REVOKE_REASON]
    assert previous[1:5] == ["operator-ui", "127.0.0.1", "patch.halt", target]
    assert seen["viewerSections"] == 3 and seen["viewerButtons"] == 0

    # The halt is the service's: the API and the signed metadata say so.
    shown = operator.get(f"/v1/admin/patches/{target}").json()
    assert shown["rollout"]["halted"] is True
    assert shown["rollout"]["halt_reason"] == "halted from the dashboard"
    # So is the revocation.
    shown = operator.get(f"/v1/admin/patches/{revoke}").json()
    assert shown["revoked"]["reason"] == REVOKE_REASON
    assert shown["rollout"]["halted"] is True
    signed = served_targets(live)[shown["target"]]["custom"]["livepatch"]
    assert signed["revoked"] == shown["revoked"]
    assert signed["revoked"]["reason"] == REVOKE_REASON
    assert signed["rollout"]["halted"] is True
    for name in (
        "login",
        "fleet",
        "rollouts-before",
        "rollouts-after",
        "revoke-confirm",
        "rollouts-revoked",
        "machines",
        "machine",
    ):
        assert (ARTIFACTS / f"{name}.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def served_targets(live: LiveServer) -> dict[str, Any]:
    """The signed targets as a machine gets them: timestamp, snapshot, then targets."""
    client = live.client()
    timestamp = client.get("/v1/metadata/timestamp.json").json()
    snapshot_version = timestamp["signed"]["meta"]["snapshot.json"]["version"]
    snapshot = client.get(f"/v1/metadata/{snapshot_version}.snapshot.json").json()
    version = snapshot["signed"]["meta"]["targets.json"]["version"]
    targets: dict[str, Any] = client.get(f"/v1/metadata/{version}.targets.json").json()
    return dict(targets["signed"]["targets"])


def login(live: LiveServer, key: str) -> httpx.Client:
    client = live.client(follow_redirects=False)
    response = client.post("/ui/login", data={"key": key})
    assert response.status_code == 303, response.text
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" in cookie
    return client


def test_pages_need_a_session_and_are_small(dashboard: Any) -> None:
    live, keys, _patches, _operator = dashboard
    anonymous = live.client(follow_redirects=False)
    for page in ("/ui", "/ui/rollouts", "/ui/machines", "/ui/machines/web-01", "/ui/audit"):
        response = anonymous.get(page)
        assert response.status_code == 303 and response.headers["location"] == "/ui/login"
    forger = live.client(follow_redirects=False, cookies={"livepatch_session": "1.99999999999.00"})
    assert forger.get("/ui").status_code == 303
    viewer = login(live, keys["viewer"])
    for page in (
        "/ui",
        "/ui/rollouts",
        "/ui/machines",
        "/ui/machines/web-01",
        "/ui/audit",
        "/ui/tokens",
    ):
        response = viewer.get(page)
        assert response.status_code == 200, (page, response.text[:300])
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert len(response.content) < 64 * 1024, (page, len(response.content))
        assert "<script" not in response.text and "http://" not in response.text
    assert "button" not in viewer.get("/ui/rollouts").text.split("<main>")[1].split("Log out")[0]


def test_actions_need_csrf_and_the_operator_role(dashboard: Any) -> None:
    live, keys, patches, operator = dashboard
    target = patches["6.1.0-57-amd64"]
    before = operator.get(f"/v1/admin/patches/{target}").json()["rollout"]
    client = login(live, keys["operator"])
    refused = client.post(f"/ui/patches/{target}/promote", data={"csrf": "0" * 64})
    assert refused.status_code == 403 and "stale or forged" in refused.text
    missing = client.post(f"/ui/patches/{target}/promote", data={})
    assert missing.status_code == 403
    viewer = login(live, keys["viewer"])
    page = viewer.get("/ui").text
    csrf = page.split('name=csrf value="')[1].split('"')[0]
    as_viewer = viewer.post(f"/ui/patches/{target}/promote", data={"csrf": csrf})
    assert as_viewer.status_code == 403 and "operator role" in as_viewer.text
    # A viewer forging the revocation's confirmation, with its own session's token.
    confirmed = {"csrf": csrf, "reason": "forged", "confirm": target}
    as_viewer = viewer.post(f"/ui/patches/{target}/revoke", data=confirmed)
    assert as_viewer.status_code == 403 and "operator role" in as_viewer.text
    # An operator's session with a forged token.
    forged = client.post(f"/ui/patches/{target}/revoke", data={**confirmed, "csrf": "0" * 64})
    assert forged.status_code == 403 and "stale or forged" in forged.text
    # The operator's first post only asks for confirmation; an empty reason is refused.
    operator_csrf = client.get("/ui").text.split('name=csrf value="')[1].split('"')[0]
    asked = client.post(
        f"/ui/patches/{target}/revoke", data={"csrf": operator_csrf, "reason": "not yet"}
    )
    assert asked.status_code == 200 and f"Revoke {target}?" in asked.text
    assert f'name=confirm value="{target}"' in asked.text
    empty = client.post(
        f"/ui/patches/{target}/revoke",
        data={"csrf": operator_csrf, "reason": " ", "confirm": target},
    )
    assert empty.status_code == 422 and "needs a reason" in empty.text
    shown = operator.get(f"/v1/admin/patches/{target}").json()
    assert shown["rollout"] == before and shown["revoked"] is None
    # A revoked admin's session ends at once.
    name = f"gone-{uuid.uuid4().hex[:6]}"
    key = live.admin_json("admins", "create", name, "--role", "operator")["key"]
    session = login(live, key)
    assert session.get("/ui").status_code == 200
    live.admin("admins", "revoke", name)
    assert session.get("/ui").status_code == 303
