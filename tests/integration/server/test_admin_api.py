"""The admin API over real TLS: roles per endpoint, the audit log, fleet filters,
and `livepatch-admin --server` against it (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.client
import json
import ssl
import subprocess
import sys
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.integration.server.conftest import module_named
from tests.integration.server.live import LiveServer

ADMIN = Path(sys.executable).with_name("livepatch-admin")
ROLES = ("viewer", "operator", "admin")
RANK = {"viewer": 0, "operator": 1, "admin": 2}


@pytest.fixture(scope="module")
def keys(live: LiveServer) -> dict[str, str]:
    """One API key per role, created by the local command as a first admin would be."""
    suffix = uuid.uuid4().hex[:6]
    return {
        role: live.admin_json("admins", "create", f"{role}-{suffix}", "--role", role)["key"]
        for role in ROLES
    }


def as_role(live: LiveServer, key: str | None) -> httpx.Client:
    headers = {"X-Admin-Key": key} if key is not None else {}
    return live.client(headers=headers)


def publish(
    live: LiveServer, kernel: str, name: str, overrides: dict[str, float] | None = None
) -> str:
    module = module_named(name)
    created = live.admin_json(
        "admins", "create", f"publisher-{uuid.uuid4().hex[:6]}", "--role", "operator"
    )
    response = as_role(live, created["key"]).post(
        "/v1/admin/patches",
        json={
            "module_base64": base64.b64encode(module).decode(),
            "kernels": [kernel],
            "cves": ["CVE-2024-1086"],
            "severity": "high",
            "description": "a fix",
            "overrides": overrides or {},
        },
    )
    assert response.status_code == 201, response.text
    return str(response.json()["patch_id"])


# (method, path, body, the least role allowed)
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("GET", "/v1/admin/whoami", None, "viewer"),
    ("GET", "/v1/admin/tokens", None, "viewer"),
    ("POST", "/v1/admin/tokens", {"machines": 2}, "admin"),
    ("POST", "/v1/admin/tokens/999999/revoke", {}, "admin"),
    ("GET", "/v1/admin/patches", None, "viewer"),
    ("GET", "/v1/admin/patches/lp-none-1", None, "viewer"),
    (
        "POST",
        "/v1/admin/patches",
        {
            "module_base64": "bm90IGEgbW9kdWxl",
            "kernels": ["6.1.0-1-amd64"],
            "cves": ["CVE-2024-1086"],
            "severity": "low",
            "description": "not a module",
        },
        "operator",
    ),
    ("POST", "/v1/admin/patches/lp-none-1/promote", {}, "operator"),
    ("POST", "/v1/admin/patches/lp-none-1/halt", {"reason": "matrix"}, "operator"),
    ("POST", "/v1/admin/patches/lp-none-1/resume", {}, "operator"),
    ("POST", "/v1/admin/patches/lp-none-1/withdraw", {}, "operator"),
    ("POST", "/v1/admin/patches/lp-none-1/revoke", {"reason": "matrix"}, "operator"),
    ("GET", "/v1/admin/machines", None, "viewer"),
    ("GET", "/v1/admin/machines?state=stale", None, "viewer"),
    ("GET", "/v1/admin/machines/no-such-machine", None, "viewer"),
    (
        "PUT",
        "/v1/admin/kernels/5.4.0-1-generic/end-of-life",
        {"end_of_life": "2020-01-01T00:00:00Z"},
        "operator",
    ),
    ("GET", "/v1/admin/keys", None, "viewer"),
    ("GET", "/v1/admin/audit", None, "viewer"),
    ("GET", "/v1/admin/admins", None, "admin"),
    ("POST", "/v1/admin/admins", {"name": "matrix", "role": "viewer"}, "admin"),
    ("POST", "/v1/admin/admins/no-such-admin/revoke", {}, "admin"),
]


@pytest.mark.parametrize(("method", "path", "body", "least"), ENDPOINTS)
def test_each_role_gets_exactly_its_endpoints(
    live: LiveServer,
    keys: dict[str, str],
    method: str,
    path: str,
    body: dict[str, Any] | None,
    least: str,
) -> None:
    for key, expected in ((None, 401), ("lpadm_" + "x" * 43, 401), ("not-a-key", 401)):
        response = as_role(live, key).request(method, path, json=body)
        assert response.status_code == expected, (key, response.text)
        assert response.json()["error"]["code"] == "unauthenticated"
    for role in ROLES:
        response = as_role(live, keys[role]).request(method, path, json=body)
        if RANK[role] < RANK[least]:
            assert response.status_code == 403, (role, response.text)
            assert f"needs the {least} role" in response.json()["error"]["message"]
        else:
            assert response.status_code not in (401, 403), (role, response.text)
            assert response.status_code < 500, (role, response.text)


def test_every_admin_route_is_in_the_matrix(live: LiveServer) -> None:
    schema = live.client().get("/openapi.json").json()
    documented = {
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        if path.startswith("/v1/admin/")
        for method in operations
    }
    covered = set()
    for method, path, _body, _least in ENDPOINTS:
        concrete = path.split("?")[0].split("/")
        for template_method, template in documented:
            parts = template.split("/")
            if (
                template_method == method
                and len(parts) == len(concrete)
                and all(p == c or p.startswith("{") for p, c in zip(parts, concrete, strict=True))
            ):
                covered.add((template_method, template))
    assert covered == documented, documented - covered


def test_keys_are_stored_hashed_and_a_revoked_key_stops_working(
    live: LiveServer, keys: dict[str, str]
) -> None:
    created = live.admin_json("admins", "create", f"temp-{uuid.uuid4().hex[:6]}", "--role", "admin")
    key = created["key"]
    assert as_role(live, key).get("/v1/admin/whoami").json()["role"] == "admin"
    engine = create_engine(live.database_url)
    with engine.connect() as connection:
        stored = connection.execute(
            text("SELECT key_digest FROM admins WHERE name = :n"), {"n": created["name"]}
        ).scalar_one()
    engine.dispose()
    assert stored == hashlib.sha256(key.encode()).hexdigest()
    revoked = as_role(live, keys["admin"]).post(f"/v1/admin/admins/{created['name']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["revoked"] is not None
    assert as_role(live, key).get("/v1/admin/whoami").status_code == 401


def test_changes_are_audited_with_who_what_and_where(
    live: LiveServer, keys: dict[str, str]
) -> None:
    patch_id = publish(live, "6.1.0-71-amd64", "livepatch_audit")
    operator = as_role(live, keys["operator"])
    name = operator.get("/v1/admin/whoami").json()["name"]
    halted = operator.post(f"/v1/admin/patches/{patch_id}/halt", json={"reason": "bad canary"})
    assert halted.status_code == 200 and halted.json()["rollout"]["halted"] is True
    entries = as_role(live, keys["viewer"]).get("/v1/admin/audit", params={"limit": 5}).json()
    entries = entries["items"]
    newest = entries[0]
    assert (newest["actor"], newest["source"], newest["action"], newest["target"]) == (
        name,
        "127.0.0.1",
        "patch.halt",
        patch_id,
    )
    assert newest["detail"] == "bad canary"
    assert any(e["action"] == "patch.publish" and e["target"] == patch_id for e in entries)
    # A refused change is not audited.
    assert operator.post(f"/v1/admin/patches/{patch_id}/promote", json={}).status_code == 409
    again = as_role(live, keys["viewer"]).get("/v1/admin/audit", params={"limit": 1}).json()
    assert again["items"][0]["id"] == newest["id"]
    printed = live.admin("audit", "--limit", "3")
    assert f"{name}" in printed and "patch.halt" in printed and "127.0.0.1" in printed


def test_revoke_through_the_api_is_final_audited_and_shown(
    live: LiveServer, keys: dict[str, str]
) -> None:
    patch_id = publish(live, "6.1.0-75-amd64", "livepatch_revoke_api")
    operator = as_role(live, keys["operator"])
    shown = operator.get(f"/v1/admin/patches/{patch_id}").json()
    # Published through the API: the pre-flight could not run, and the record says so.
    assert shown["preflight"]["result"] == "skipped"
    assert shown["preflight"]["kernel"] == "6.1.0-75-amd64"
    assert shown["revoked"] is None
    revoked = operator.post(f"/v1/admin/patches/{patch_id}/revoke", json={"reason": "oops"})
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked"]["reason"] == "oops"
    assert revoked.json()["rollout"]["halted"] is True
    audit = as_role(live, keys["viewer"]).get("/v1/admin/audit", params={"limit": 1}).json()
    newest = audit["items"][0]
    assert (newest["action"], newest["target"], newest["detail"]) == (
        "patch.revoke",
        patch_id,
        "oops",
    )
    assert operator.post(f"/v1/admin/patches/{patch_id}/resume").status_code == 409
    again = operator.post(f"/v1/admin/patches/{patch_id}/revoke", json={"reason": "twice"})
    assert again.status_code == 409
    row = next(line for line in live.admin("patches", "list").splitlines() if patch_id in line)
    assert "canary REVOKED" in row and "skipped" in row


def enrol(live: LiveServer, token: str, kernel: str, name: str) -> str:
    response = live.client(headers={"User-Agent": "livepatch/1.4.2"}).post(
        "/v1/enrol",
        json={
            "token": token,
            "machine_id": name,
            "hostname": f"{name}.example",
            "kernel": kernel,
            "architecture": "amd64",
        },
    )
    assert response.status_code == 201, response.text
    return str(response.json()["credential"])


def report(live: LiveServer, machine: str, credential: str, patch_id: str, result: str) -> None:
    response = live.client().post(
        f"/v1/machines/{machine}/reports",
        headers={"Authorization": f"Bearer {credential}"},
        json={
            "patch_id": patch_id,
            "kernel": "6.1.0-72-amd64",
            "result": result,
            "duration_ms": 5,
            "taint": 0,
        },
    )
    assert response.status_code == 202, response.text


def test_machines_filter_by_state_kernel_and_patch(live: LiveServer, keys: dict[str, str]) -> None:
    # Every machine admitted at canary: the service counts reports only from those.
    everyone = {"canary_percentage": 100.0, "moderate_percentage": 100.0}
    patch_id = publish(live, "6.1.0-72-amd64", "livepatch_fleet", everyone)
    token = live.admin_json("tokens", "create", "--machines", "10")["token"]
    run = uuid.uuid4().hex[:6]
    good, bad, old = f"good-{run}", f"bad-{run}", f"old-{run}"
    report(live, good, enrol(live, token, "6.1.0-72-amd64", good), patch_id, "applied")
    report(live, bad, enrol(live, token, "6.1.0-72-amd64", bad), patch_id, "failed")
    enrol(live, token, "6.1.0-70-amd64", old)
    viewer = as_role(live, keys["viewer"])

    def ids(**params: str) -> set[str]:
        response = viewer.get("/v1/admin/machines", params=params)
        assert response.status_code == 200, response.text
        assert response.json()["next"] is None
        return {m["machine_id"] for m in response.json()["items"]} & {good, bad, old}

    assert ids() == {good, bad, old}
    assert ids(state="apply-failed") == {bad}
    assert ids(state="kernel-upgrade-required") == {old}
    assert ids(state="stale") == set()
    assert ids(kernel="6.1.0-70-amd64") == {old}
    assert ids(patch=patch_id) == {good, bad}
    assert ids(patch=patch_id, state="apply-failed") == {bad}
    assert viewer.get("/v1/admin/machines", params={"state": "on-fire"}).status_code == 422

    shown = viewer.get(f"/v1/admin/machines/{good}").json()
    assert shown["hostname"] == f"{good}.example"
    assert shown["kernel"] == "6.1.0-72-amd64"
    assert shown["patch_loaded"] == patch_id
    assert shown["supported"] == "supported"
    assert shown["client_version"] == "1.4.2"
    assert shown["architecture"] == "amd64" and shown["tier"] == "community"
    assert shown["states"] == []
    assert [(h["patch_id"], h["result"]) for h in shown["history"]] == [(patch_id, "applied")]
    printed = live.admin("machines", "list", "--state", "apply-failed")
    assert bad in printed and good not in printed


def run_remote(live: LiveServer, key_file: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(ADMIN),
            "--server",
            live.url,
            "--api-key-file",
            str(key_file),
            "--ca-file",
            str(live.ca),
            *argv,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_command_runs_against_a_remote_service(
    live: LiveServer, keys: dict[str, str], tmp_path: Path
) -> None:
    admin_key, viewer_key = tmp_path / "admin.key", tmp_path / "viewer.key"
    admin_key.write_text(keys["admin"] + "\n")
    viewer_key.write_text(keys["viewer"])
    created = run_remote(live, admin_key, "tokens", "create", "--machines", "4")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.splitlines()[0]
    listed = run_remote(live, viewer_key, "tokens", "list")
    assert listed.returncode == 0, listed.stderr
    assert secret[:6] + "…" in listed.stdout
    assert secret not in listed.stdout
    # The same documents as the local command prints.
    remote = run_remote(live, viewer_key, "patches", "list", "--format", "json")
    assert remote.returncode == 0, remote.stderr
    assert remote.stdout == live.admin("patches", "list", "--format", "json")
    refused = run_remote(live, viewer_key, "tokens", "create")
    assert refused.returncode != 0
    assert "needs the admin role" in refused.stderr and "Traceback" not in refused.stderr
    untrusted = subprocess.run(
        [str(ADMIN), "--server", live.url, "--api-key-file", str(viewer_key), "tokens", "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert untrusted.returncode != 0 and "--ca-file" in untrusted.stderr
    module = tmp_path / "remote.ko"
    module.write_bytes(module_named("livepatch_remote"))
    unflighted = run_remote(
        live,
        admin_key,
        "publish",
        str(module),
        "--kernel",
        "6.1.0-74-amd64",
        "--cve",
        "CVE-2024-1086",
        "--severity",
        "low",
        "--description",
        "no pre-flight through --server",
    )
    assert unflighted.returncode != 0 and "--no-preflight" in unflighted.stderr
    published = run_remote(
        live,
        admin_key,
        "publish",
        "--no-preflight",
        str(module),
        "--kernel",
        "6.1.0-74-amd64",
        "--cve",
        "CVE-2024-1086",
        "--severity",
        "low",
        "--description",
        "sent over HTTPS",
        "--format",
        "json",
    )
    assert published.returncode == 0, published.stderr
    patch_id = json.loads(published.stdout)["patch_id"]
    halted = run_remote(live, admin_key, "patches", "halt", patch_id, "--reason", "remote")
    assert halted.returncode == 0 and halted.stdout.strip() == f"{patch_id}: canary 5% HALTED"
    audited = live.admin_json("audit", "--limit", "2")
    assert [(e["action"], e["target"]) for e in audited] == [
        ("patch.halt", patch_id),
        ("patch.publish", patch_id),
    ]
    keys_status = run_remote(live, viewer_key, "keys", "status", "--format", "json")
    assert keys_status.returncode == 0, keys_status.stderr
    assert "module-signing CA" in {line["what"] for line in json.loads(keys_status.stdout)}
    local_only = run_remote(live, admin_key, "keys", "rotate-tuf", "timestamp")
    assert local_only.returncode != 0 and "without --server" in local_only.stderr
    plain = subprocess.run(
        [str(ADMIN), "--server", "http://example.com", "--api-key-file", str(viewer_key), "audit"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert plain.returncode != 0 and "https://" in plain.stderr


def ubuntu_pro_query(version: str, flavor: str, build_date: datetime.datetime | None) -> str:
    """The query string UALivepatchClient.is_kernel_supported sends (ubuntu-pro-client)."""
    query_params = {
        "kernel-version": version,
        "flavour": flavor,
        "architecture": "amd64",
        "codename": "bookworm",
        "build-date": build_date.isoformat() if build_date is not None else "unknown",
    }
    return "/v1/api/kernels/supported?" + urllib.parse.urlencode(query_params)


def test_kernel_support_answers_ubuntu_pros_query(live: LiveServer, keys: dict[str, str]) -> None:
    built = datetime.datetime(2025, 3, 1, 12, 0, tzinfo=datetime.UTC)

    def supported(version: str, flavor: str, build: datetime.datetime | None = built) -> Any:
        response = live.client().get(ubuntu_pro_query(version, flavor, build))
        assert response.status_code == 200, response.text
        assert set(response.json()) == {"Supported"}
        return response.json()["Supported"]

    assert supported("5.10", "amd64") == "unsupported"
    publish(live, "5.10.0-30-amd64", "livepatch_series")
    assert supported("5.10", "amd64") == "supported"
    assert supported("5.10", "amd64", None) == "supported"
    assert supported("5.10", "cloud-amd64") == "unsupported"
    assert supported("garbage", "amd64") == "unknown"
    operator = as_role(live, keys["operator"])
    ended = operator.put(
        "/v1/admin/kernels/5.10.0-30-amd64/end-of-life",
        json={"end_of_life": "2025-01-01T00:00:00Z"},
    )
    assert ended.status_code == 200, ended.text
    assert supported("5.10", "amd64") == "kernel-end-of-life"
    token = live.admin_json("tokens", "create", "--machines", "1")["token"]
    machine = f"eol-{uuid.uuid4().hex[:6]}"
    enrol(live, token, "5.10.0-30-amd64", machine)
    shown = as_role(live, keys["viewer"]).get(f"/v1/admin/machines/{machine}").json()
    assert shown["supported"] == "kernel-end-of-life"
    assert "kernel-upgrade-required" in shown["states"]


def test_bodies_beyond_the_limit_are_refused_before_they_are_read(
    live: LiveServer, keys: dict[str, str]
) -> None:
    parsed = urllib.parse.urlsplit(live.url)
    context = live.verify()
    assert isinstance(context, ssl.SSLContext) and parsed.hostname is not None
    connection = http.client.HTTPSConnection(parsed.hostname, parsed.port, context=context)
    try:
        connection.putrequest("POST", "/v1/admin/patches")
        connection.putheader("X-Admin-Key", keys["operator"])
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(25 * 1024 * 1024))
        connection.endheaders()  # and no body: the answer must not wait for it
        response = connection.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["error"]["code"] == "body-too-large"
    finally:
        connection.close()
