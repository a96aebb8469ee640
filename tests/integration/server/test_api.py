"""The HTTP API over real TLS on loopback, against SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import http.client
import json
import ssl
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from livepatch.rollout import bucket
from livepatch.trust import patchmeta
from tests.integration.server.live import (
    LiveServer,
    count,
    live_server,
    wait_for_counts,
    wait_for_workers,
)

KERNEL = "6.1.0-56-amd64"


def new_token(live: LiveServer, machines: int = 3, tier: str = "community") -> str:
    created = live.admin_json("tokens", "create", "--machines", str(machines), "--tier", tier)
    return str(created["token"])


def enrol_body(token: str, machine_id: str | None = None, kernel: str = KERNEL) -> dict[str, str]:
    return {
        "token": token,
        "machine_id": machine_id or uuid.uuid4().hex,
        "hostname": "host.example",
        "kernel": kernel,
        "architecture": "amd64",
    }


def admitted_id(patch_id: str, percentage: float = 5.0) -> str:
    """A machine id the patch's canary admits (the bucket formula picks it, as a fleet would)."""
    for n in range(100_000):
        machine_id = f"canary-{uuid.uuid4().hex[:8]}-{n}"
        if bucket(machine_id, patch_id) < percentage * 100:
            return machine_id
    raise AssertionError("no admitted machine id found")


def enrol(
    live: LiveServer, token: str, machine_id: str | None = None, kernel: str = KERNEL
) -> dict[str, Any]:
    response = live.client().post("/v1/enrol", json=enrol_body(token, machine_id, kernel))
    assert response.status_code == 201, response.text
    document: dict[str, Any] = response.json()
    return document


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def assert_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    message: str = body["error"]["message"]
    assert message.endswith(".") and "\n" not in message
    return message


def test_the_served_openapi_document_is_the_committed_one(live: LiveServer) -> None:
    committed = Path(__file__).parents[3] / "interfaces" / "openapi.json"
    served = live.client().get("/openapi.json")
    assert served.status_code == 200
    assert served.json() == json.loads(committed.read_text())


def test_tls_is_required_and_verified(live: LiveServer) -> None:
    assert live.url.startswith("https://")
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{live.url}/healthz", timeout=10)  # the system CAs do not know it
    plain = live.url.replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):
        response = httpx.get(f"{plain}/healthz", timeout=10)
        response.raise_for_status()


def test_healthz(live: LiveServer) -> None:
    response = live.client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_enrolment_returns_a_credential_and_the_signed_root(live: LiveServer) -> None:
    enrolled = enrol(live, new_token(live))
    assert enrolled["tier"] == "community"
    assert len(enrolled["credential"]) >= 40
    assert enrolled["expires"].endswith(("Z", "+00:00"))
    assert enrolled["root"]["signed"]["_type"] == "root"
    assert enrolled["root"]["signatures"]


def test_unknown_token_is_401_with_the_familiar_message(live: LiveServer) -> None:
    response = live.client().post("/v1/enrol", json=enrol_body("f" * 32))
    assert "Unknown Auth-Token" in assert_error(response, 401, "unknown-token")


def test_exhausted_and_revoked_tokens(live: LiveServer) -> None:
    token = new_token(live, machines=1)
    enrol(live, token)
    assert_error(live.client().post("/v1/enrol", json=enrol_body(token)), 409, "token-exhausted")
    live.admin("tokens", "revoke", token[:6])
    assert_error(live.client().post("/v1/enrol", json=enrol_body(token)), 403, "token-revoked")


def test_renew_replaces_the_credential(live: LiveServer) -> None:
    enrolled = enrol(live, new_token(live))
    path = f"/v1/machines/{enrolled['machine_id']}/renew"
    response = live.client().post(path, headers=bearer(enrolled["credential"]))
    assert response.status_code == 200, response.text
    renewed = response.json()
    assert renewed["credential"] != enrolled["credential"]
    old = live.client().post(path, headers=bearer(enrolled["credential"]))
    assert_error(old, 401, "unauthenticated")
    assert live.client().post(path, headers=bearer(renewed["credential"])).status_code == 200


def test_deenrolment_frees_the_slot(live: LiveServer) -> None:
    token = new_token(live, machines=1)
    enrolled = enrol(live, token)
    client = live.client()
    assert_error(client.post("/v1/enrol", json=enrol_body(token)), 409, "token-exhausted")
    gone = client.delete(
        f"/v1/machines/{enrolled['machine_id']}", headers=bearer(enrolled["credential"])
    )
    assert gone.status_code == 204
    enrol(live, token)


def test_machine_endpoints_need_the_machines_own_credential(live: LiveServer) -> None:
    token = new_token(live)
    first, second = enrol(live, token), enrol(live, token)
    client = live.client()
    path = f"/v1/machines/{second['machine_id']}"
    assert_error(client.delete(path), 401, "unauthenticated")
    assert_error(client.delete(path, headers=bearer(first["credential"])), 403, "forbidden")
    assert_error(client.delete(path, headers=bearer("nonsense")), 401, "unauthenticated")


def test_machine_limit_holds_under_parallel_http_enrolments(live: LiveServer) -> None:
    token = new_token(live, machines=7)

    def attempt(_: int) -> int:
        with httpx.Client(base_url=live.url, verify=live.verify(), timeout=60) as client:
            return client.post("/v1/enrol", json=enrol_body(token)).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(attempt, range(40)))
    assert statuses.count(201) == 7
    assert statuses.count(409) == 33
    [listed] = [t for t in live.admin_json("tokens", "list") if t["hint"] == token[:6]]
    assert listed["machines"] == 7


def test_machine_limit_holds_across_worker_processes(tmp_path: Path, database_url: str) -> None:
    """Two uvicorn workers: only the database (BEGIN IMMEDIATE, FOR UPDATE) serialises them.

    Within one process a lock queues SQLite writers, so the one-worker test
    above would pass without the database's own guarantee; this one would not.
    """
    limit, attempts = 5, 48
    with live_server(tmp_path / "data", database_url, workers=2) as server:
        wait_for_workers(server)
        token = new_token(server, machines=limit)
        barrier = threading.Barrier(24)

        def attempt(_: int) -> httpx.Response:
            with httpx.Client(base_url=server.url, verify=server.verify(), timeout=60) as client:
                client.get("/healthz")  # connected (TLS done) before the race starts
                with contextlib.suppress(threading.BrokenBarrierError):
                    barrier.wait(timeout=30)
                return client.post("/v1/enrol", json=enrol_body(token))

        with ThreadPoolExecutor(max_workers=24) as pool:
            responses = list(pool.map(attempt, range(attempts)))
        statuses = [r.status_code for r in responses]
        assert statuses.count(201) == limit, statuses
        refused = [r for r in responses if r.status_code != 201]
        assert len(refused) == attempts - limit
        for response in refused:
            message = assert_error(response, 409, "token-exhausted")
            assert f"no machine slots left (limit {limit})" in message
        [listed] = [t for t in server.admin_json("tokens", "list") if t["hint"] == token[:6]]
        assert listed["machines"] == limit
        # The race spanned both processes: each counted some of it.
        exhausted = (("code", "token-exhausted"),)
        workers = wait_for_counts(
            server,
            {
                ("livepatch_enrolments_total", ()): limit,
                ("livepatch_enrolment_refusals_total", exhausted): attempts - limit,
            },
        )
        assert len(workers) == 2, workers
        assert all(
            count(w, "livepatch_enrolments_total")
            + count(w, "livepatch_enrolment_refusals_total", code="token-exhausted")
            for w in workers
        ), workers


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"token": "x"}, "machine_id"),
        ({**enrol_body("a" * 32), "extra": 1}, "extra"),
        ({**enrol_body("a" * 32), "hostname": "a\x00b"}, "hostname"),
        ({**enrol_body("a" * 32), "kernel": "k" * 300}, "kernel"),
        ({**enrol_body("a" * 32), "machine_id": 5}, "machine_id"),
        ([], "body"),
    ],
)
def test_bad_input_is_422_with_a_reason(live: LiveServer, body: Any, fragment: str) -> None:
    response = live.client().post("/v1/enrol", json=body)
    assert fragment in assert_error(response, 422, "invalid-request").lower()


def test_malformed_json_is_422(live: LiveServer) -> None:
    response = live.client().post(
        "/v1/enrol", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert "not valid JSON" in assert_error(response, 422, "invalid-request")


def test_unknown_routes_and_methods_are_json_errors(live: LiveServer) -> None:
    assert_error(live.client().get("/v1/nothing"), 404, "not-found")
    assert_error(live.client().put("/v1/enrol"), 405, "method-not-allowed")
    assert_error(live.client().get("/v1/metadata/missing.json"), 404, "not-found")


def raw_get(
    live: LiveServer, path: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """GET `path` exactly as written: http.client sends it without normalising dot segments."""
    parsed = urlsplit(live.url)
    context = live.verify()
    assert isinstance(context, ssl.SSLContext)
    assert parsed.hostname is not None
    connection = http.client.HTTPSConnection(parsed.hostname, parsed.port, context=context)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize(
    "path",
    [
        "/v1/targets/../../etc/passwd",
        "/v1/targets/../../../../../../../../etc/passwd",
        "/v1/targets/%2e%2e/%2e%2e/etc/passwd",
        "/v1/targets/..%2f..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/v1/targets/../metadata/root.json",  # exists under the blob directory
        "/v1/targets/../../keys/module-signing/ca-key.pem",  # the CA's private key
        "/v1/targets/%2e%2e/%2e%2e/keys/module-signing/ca-key.pem",
        "/v1/targets/patches/../../../livepatch.db",
        "/v1/targets/../../tls-key.pem",  # the server's TLS key
        "/v1/metadata/..%2f..%2fkeys%2fmodule-signing%2fca-key.pem",
        "/v1/metadata/%2e%2e%2froot.json",
        "/v1/targets//etc/passwd",
        "/v1/targets/%2fetc%2fpasswd",
    ],
)
def test_paths_out_of_the_repository_are_refused(live: LiveServer, path: str) -> None:
    # The files exist: a server that followed the path would serve them.
    assert (live.data_dir / "keys" / "module-signing" / "ca-key.pem").is_file()
    assert (live.data_dir / "blobs" / "metadata" / "root.json").is_file()
    # As an enrolled machine, which may download modules: the path alone is refused.
    credential = enrol(live, new_token(live, 1))["credential"]
    status, body = raw_get(live, path, bearer(credential))
    assert 400 <= status < 500, (status, body[:200])
    assert b"root:" not in body and b"PRIVATE KEY" not in body
    assert b"SQLite format" not in body and b'"_type"' not in body
    error = json.loads(body)["error"]
    assert error["code"] in ("not-found", "invalid-request"), error


def test_publish_report_and_show(live: LiveServer, module_file: Path) -> None:
    token = new_token(live, machines=5)
    published = live.admin_json(
        "publish",
        "--no-preflight",
        str(module_file),
        "--kernel",
        KERNEL,
        "--cve",
        "CVE-2024-1086",
        "--severity",
        "high",
        "--description",
        "nf_tables use-after-free",
    )
    patch_id = published["patch_id"]
    assert patch_id.startswith(f"lp-{KERNEL}-")
    assert published["rollout"] == {
        "stage": "canary",
        "percentage": 5.0,
        "halted": False,
        "halt_reason": None,
        "since": published["rollout"]["since"],
    }
    targets = current_targets(live)
    custom = signed_custom(targets, f"patches/{patch_id}.ko")
    assert custom["rollout"] == {"stage": "canary", "percentage": 5.0, "halted": False}
    assert custom["cves"][0]["id"] == "CVE-2024-1086"
    enrolled = enrol(live, token, admitted_id(patch_id))
    report = {
        "patch_id": patch_id,
        "kernel": KERNEL,
        "result": "failed",
        "errno": 1,
        "reason": "Operation not permitted",
        "duration_ms": 120,
        "taint": 0,
    }
    path = f"/v1/machines/{enrolled['machine_id']}/reports"
    response = live.client().post(path, json=report, headers=bearer(enrolled["credential"]))
    assert response.status_code == 202, response.text
    assert response.json() == {"stage": "canary"}
    shown = live.admin_json("patches", "show", patch_id)
    assert shown["reports"] == [{"stage": "canary", "kernel": KERNEL, "applied": 0, "failed": 1}]
    unknown = live.client().post(
        path, json={**report, "patch_id": "lp-none-1"}, headers=bearer(enrolled["credential"])
    )
    assert_error(unknown, 404, "not-found")


def test_halt_is_signed_into_metadata(live: LiveServer, module_file: Path) -> None:
    published = live.admin_json(
        "publish",
        "--no-preflight",
        str(module_file),
        "--kernel",
        "5.15.0-1-generic",
        "--cve",
        "CVE-2024-1001",
        "--severity",
        "low",
        "--description",
        "d",
    )
    name = f"patches/{published['patch_id']}.ko"
    live.admin("patches", "halt", published["patch_id"], "--reason", "bad")
    custom = signed_custom(current_targets(live), name)
    assert custom["rollout"]["halted"] is True
    live.admin("patches", "resume", published["patch_id"])
    live.admin("patches", "promote", published["patch_id"])
    custom = signed_custom(current_targets(live), name)
    assert custom["rollout"] == {"stage": "moderate", "percentage": 30.0, "halted": False}
    live.admin("patches", "withdraw", published["patch_id"])
    assert name not in current_targets(live)["signed"]["targets"]
    # Made by livepatch-admin, another process, and counted by the server all the same.
    metrics = live.client().get("/metrics").text
    assert 'livepatch_halts_total{stage="canary",trigger="manual"} 1\n' in metrics
    assert 'livepatch_promotions_total{stage="moderate",trigger="manual"} 1\n' in metrics


def test_metadata_is_cacheable(live: LiveServer) -> None:
    client = live.client()
    first = client.get("/v1/metadata/timestamp.json")
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert first.headers["cache-control"] == "public, max-age=60"
    again = client.get("/v1/metadata/timestamp.json", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    version = first.json()["signed"]["meta"]["snapshot.json"]["version"]
    snapshot = client.get(f"/v1/metadata/{version}.snapshot.json")
    assert "immutable" in snapshot.headers["cache-control"]


def test_a_check_in_with_a_credential_is_counted(live: LiveServer) -> None:
    enrolled = enrol(live, new_token(live))
    client = live.client()

    def checkins() -> float:
        text = client.get("/metrics").text
        [line] = [x for x in text.splitlines() if x.startswith("livepatch_checkins_total")]
        return float(line.split()[-1])

    before = checkins()
    response = client.get("/v1/metadata/timestamp.json", headers=bearer(enrolled["credential"]))
    assert response.status_code == 200
    assert checkins() == before + 1
    bad = client.get("/v1/metadata/timestamp.json", headers=bearer("wrong"))
    assert_error(bad, 401, "unauthenticated")


def test_a_remembered_credential_stops_working_when_renewed_or_deenrolled(
    live: LiveServer,
) -> None:
    enrolled = enrol(live, new_token(live))
    client = live.client()
    metadata = "/v1/metadata/timestamp.json"
    for _ in range(3):  # the first check-in looks the credential up, the next ones remember it
        assert client.get(metadata, headers=bearer(enrolled["credential"])).status_code == 200
    machine = f"/v1/machines/{enrolled['machine_id']}"
    renewed = client.post(f"{machine}/renew", headers=bearer(enrolled["credential"])).json()
    assert_error(
        client.get(metadata, headers=bearer(enrolled["credential"])), 401, "unauthenticated"
    )
    assert client.get(metadata, headers=bearer(renewed["credential"])).status_code == 200
    assert client.delete(machine, headers=bearer(renewed["credential"])).status_code == 204
    assert_error(
        client.get(metadata, headers=bearer(renewed["credential"])), 401, "unauthenticated"
    )


def test_concurrent_reports_are_all_stored_and_refusals_explained(
    live: LiveServer, module_file: Path
) -> None:
    machines = [
        enrol(live, new_token(live, machines=1), kernel="6.1.0-99-amd64") for _ in range(12)
    ]
    published = live.admin_json(
        "publish",
        "--no-preflight",
        str(module_file),
        "--canary-percentage",
        "100",
        "--moderate-percentage",
        "100",
        "--kernel",
        "6.1.0-99-amd64",
        "--cve",
        "CVE-2024-1003",
        "--severity",
        "high",
        "--description",
        "d",
    )
    report = {
        "patch_id": published["patch_id"],
        "kernel": "6.1.0-99-amd64",
        "result": "applied",
        "errno": None,
        "reason": None,
        "duration_ms": 5,
        "taint": 0,
    }

    def post(index: int) -> httpx.Response:
        machine = machines[index % len(machines)]
        body = {**report, "result": "failed" if index % 3 == 0 else "applied"}
        with httpx.Client(base_url=live.url, verify=live.verify(), timeout=60) as client:
            return client.post(
                f"/v1/machines/{machine['machine_id']}/reports",
                json=body,
                headers=bearer(machine["credential"]),
            )

    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(post, range(12)))
    assert [r.status_code for r in responses] == [202] * 12
    shown = live.admin_json("patches", "show", published["patch_id"])
    assert shown["reports"] == [
        {"stage": "canary", "kernel": "6.1.0-99-amd64", "applied": 8, "failed": 4}
    ]
    client = live.client()
    first, second = machines[0], machines[1]
    path = f"/v1/machines/{first['machine_id']}/reports"
    assert_error(
        client.post(path, json=report, headers=bearer(second["credential"])), 403, "forbidden"
    )
    assert_error(client.post(path, json=report, headers=bearer("x" * 43)), 401, "unauthenticated")
    assert_error(client.post(path, json=report), 401, "unauthenticated")
    invalid = client.post(path, json={**report, "taint": -1}, headers=bearer(first["credential"]))
    assert "taint" in assert_error(invalid, 422, "invalid-request")
    not_json = client.post(
        path,
        content=json.dumps(report),
        headers={**bearer(first["credential"]), "Content-Type": "text/plain"},
    )
    assert not_json.status_code == 422
    broken = client.post(
        path,
        content=b'{"patch_id": ',
        headers={**bearer(first["credential"]), "Content-Type": "application/json"},
    )
    assert "not valid JSON" in assert_error(broken, 422, "invalid-request")


def test_targets_are_served_by_consistent_snapshot_name(
    live: LiveServer, module_file: Path
) -> None:
    published = live.admin_json(
        "publish",
        "--no-preflight",
        str(module_file),
        "--kernel",
        "6.8.0-1-generic",
        "--cve",
        "CVE-2024-1002",
        "--severity",
        "medium",
        "--description",
        "d",
    )
    name = f"patches/{published['patch_id']}.ko"
    info = current_targets(live)["signed"]["targets"][name]
    digest = info["hashes"]["sha256"]
    credential = enrol(live, new_token(live, 1))["credential"]
    response = live.client().get(
        f"/v1/targets/patches/{digest}.{published['patch_id']}.ko", headers=bearer(credential)
    )
    assert response.status_code == 200
    assert len(response.content) == info["length"]
    assert response.content.startswith(module_file.read_bytes())
    assert response.content.endswith(b"~Module signature appended~\n")
    assert "immutable" in response.headers["cache-control"]


def test_metrics_exposition(live: LiveServer) -> None:
    response = live.client().get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    for name in ("enrolments", "checkins", "reports", "promotions", "halts"):
        assert f"# TYPE livepatch_{name}_total counter" in response.text
    assert "livepatch_machines{" in response.text


def signed_custom(targets: dict[str, Any], name: str) -> dict[str, Any]:
    """The livepatch custom fields of a target, as signed (percentages are strings)."""
    return patchmeta.from_signed(targets["signed"]["targets"][name]["custom"]["livepatch"])


def current_targets(live: LiveServer) -> dict[str, Any]:
    client = live.client()
    timestamp = client.get("/v1/metadata/timestamp.json").json()
    snapshot_version = timestamp["signed"]["meta"]["snapshot.json"]["version"]
    snapshot = client.get(f"/v1/metadata/{snapshot_version}.snapshot.json").json()
    version = snapshot["signed"]["meta"]["targets.json"]["version"]
    document: dict[str, Any] = json.loads(
        client.get(f"/v1/metadata/{version}.targets.json").content
    )
    return document


def test_a_machine_records_the_kernel_it_booted_and_only_its_own(
    live: LiveServer, module_file: Path
) -> None:
    """Reports count for the kernel on record; a machine that booted another kernel
    says so with its credential: its own record changes (no new one), no other."""
    booted = f"6.1.0-{uuid.uuid4().int % 1000 + 1000}-amd64"
    published = live.admin_json(
        "publish", "--no-preflight", str(module_file), "--kernel", booted,
        "--cve", "CVE-2024-1086", "--severity", "high", "--description", "fix",
    )  # fmt: skip
    patch_id = published["patch_id"]
    live.admin("patches", "promote", patch_id, "--to", "all")
    token = new_token(live, machines=2)
    machine, other = enrol(live, token), enrol(live, token)
    client = live.client()
    own = bearer(machine["credential"])
    report = {"patch_id": patch_id, "kernel": booted, "result": "applied", "duration_ms": 1}
    reports = f"/v1/machines/{machine['machine_id']}/reports"
    assert_error(
        client.post(reports, json={**report, "taint": 0}, headers=own), 403, "wrong-kernel"
    )

    change = {"kernel": booted, "architecture": "amd64"}
    path = f"/v1/machines/{other['machine_id']}/kernel"
    assert_error(client.put(path, json=change), 401, "unauthenticated")
    assert_error(client.put(path, json=change, headers=own), 403, "forbidden")
    mine = f"/v1/machines/{machine['machine_id']}/kernel"
    assert_error(
        client.put(mine, json={**change, "kernel": "../x"}, headers=own), 422, "invalid-request"
    )
    answer = client.put(mine, json=change, headers=own)
    assert answer.status_code == 200, answer.text
    assert answer.json() == change

    accepted = client.post(reports, json={**report, "taint": 0}, headers=own)
    assert accepted.status_code == 202, accepted.text
    shown = live.admin_json("machines", "show", machine["machine_id"])
    assert shown["kernel"] == booted
    assert live.admin_json("machines", "show", other["machine_id"])["kernel"] == KERNEL
    [listed] = [t for t in live.admin_json("tokens", "list") if t["hint"] == token[:6]]
    assert listed["machines"] == 2  # the same records: no new one, no freed slot
