"""The patch stream: modules for enrolled machines only, unless served publicly.

Metadata stays public either way (mirrors and caches serve it); a module
download is authorised against the database each time, so a machine
de-enrolled or whose token was revoked gets nothing more at once.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.server.conftest import module_named
from tests.integration.server.live import LiveServer, live_server


def publish_target(live: LiveServer, tmp_path: Path, kernel: str) -> str:
    """Publish a module; the path of its blob under /v1/targets/."""
    module = tmp_path / "module.ko"
    module.write_bytes(module_named(f"livepatch_stream_{uuid.uuid4().hex[:8]}"))
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
    )
    patch_id = published["patch_id"]
    client = live.client()
    version = client.get("/v1/metadata/timestamp.json").json()["signed"]["meta"]["snapshot.json"]
    snapshot = client.get(f"/v1/metadata/{version['version']}.snapshot.json").json()
    targets_version = snapshot["signed"]["meta"]["targets.json"]["version"]
    targets = client.get(f"/v1/metadata/{targets_version}.targets.json").json()
    digest = targets["signed"]["targets"][f"patches/{patch_id}.ko"]["hashes"]["sha256"]
    return f"/v1/targets/patches/{digest}.{patch_id}.ko"


def enrol(live: LiveServer, token: str, kernel: str) -> dict[str, Any]:
    machine_id = f"stream-{uuid.uuid4().hex[:8]}"
    response = live.client().post(
        "/v1/enrol",
        json={
            "token": token,
            "machine_id": machine_id,
            "hostname": "h",
            "kernel": kernel,
            "architecture": "amd64",
        },
    )
    assert response.status_code == 201, response.text
    document: dict[str, Any] = response.json()
    return document


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def test_modules_need_a_live_enrolment(live: LiveServer, tmp_path: Path) -> None:
    target = publish_target(live, tmp_path, "6.1.0-81-amd64")
    client = live.client()
    anonymous = client.get(target)
    assert anonymous.status_code == 401, anonymous.text
    assert "enrolled machines only" in anonymous.json()["error"]["message"]
    assert client.head(target).status_code == 401
    assert client.get(target, headers=bearer("forged-credential")).status_code == 401
    assert client.get("/v1/metadata/timestamp.json").status_code == 200

    token = live.admin_json("tokens", "create", "--machines", "2")
    kept = enrol(live, token["token"], "6.1.0-81-amd64")
    leaving = enrol(live, token["token"], "6.1.0-81-amd64")
    for machine in (kept, leaving):
        response = client.get(target, headers=bearer(machine["credential"]))
        assert response.status_code == 200, response.text
        assert response.content.startswith(b"\x7fELF")
    etag = response.headers["etag"]
    cached = client.get(target, headers={**bearer(kept["credential"]), "If-None-Match": etag})
    assert cached.status_code == 304

    gone = client.delete(
        f"/v1/machines/{leaving['machine_id']}", headers=bearer(leaving["credential"])
    )
    assert gone.status_code == 204
    assert client.get(target, headers=bearer(leaving["credential"])).status_code == 401

    live.admin("tokens", "revoke", str(token["id"]))
    refused = client.get(target, headers=bearer(kept["credential"]))
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "token-revoked"


@pytest.mark.parametrize("database", ["sqlite"])
def test_public_targets_serve_anyone(database: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with live_server(data, f"{database}:///{data}/livepatch.db", public_targets=True) as live:
        target = publish_target(live, tmp_path, "6.1.0-82-amd64")
        response = live.client().get(target)
        assert response.status_code == 200, response.text
        assert response.content.startswith(b"\x7fELF")
        assert "immutable" in response.headers["cache-control"]
