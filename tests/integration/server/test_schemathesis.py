"""Property-based requests from the OpenAPI document: no input may cause a 5xx.

The machine API gets a machine credential and the admin API an admin's key.

The coverage phase is left out: on CPython 3.11.7 it crashes inside
hypothesis (``SystemError: AST constructor recursion depth mismatch`` while
describing a filter), before sending anything.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.integration.server.live import LiveServer

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.mark.slow
def test_no_server_errors_for_generated_requests(live: LiveServer, tmp_path: Path) -> None:
    created = live.admin_json("tokens", "create", "--machines", "1000")
    response = live.client().post(
        "/v1/enrol",
        json={
            "token": created["token"],
            "machine_id": "fuzzer",
            "hostname": "fuzz",
            "kernel": "6.1.0-56-amd64",
            "architecture": "amd64",
        },
    )
    assert response.status_code == 201
    credential = response.json()["credential"]
    # The admin API is exercised authenticated, with every role's rights.
    name = f"fuzzer-{uuid.uuid4().hex[:8]}"
    admin_key = live.admin_json("admins", "create", name, "--role", "admin")["key"]
    live.client().get("/openapi.json").raise_for_status()
    result = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{live.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--phases",
            "examples,fuzzing",
            "--tls-verify",
            str(live.ca),
            "--header",
            f"Authorization: Bearer {credential}",
            "--header",
            f"X-Admin-Key: {admin_key}",
            "--request-timeout",
            "30",
            "--seed",
            "1",
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert counts is not None, result.stdout[-3000:]
    generated, passed = int(counts.group(1)), int(counts.group(2))
    assert generated >= 100 and passed == generated
    # The admin routes were reached authenticated: the fuzzer's changes are audited.
    audit = live.admin_json("audit", "--limit", "1000")
    assert {e["action"] for e in audit if e["actor"] == name} >= {"token.create", "admin.create"}
