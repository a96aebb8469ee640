"""The installed commands: livepatch-server migrate/serve and livepatch-admin."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.server.live import live_server

BIN = Path(sys.executable).parent


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def test_migrate_then_admin_commands_share_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    migrated = run(str(BIN / "livepatch-server"), "migrate", "--data-dir", str(data))
    assert migrated.returncode == 0, migrated.stderr
    assert (data / "livepatch.db").exists()
    created = run(str(BIN / "livepatch-admin"), "tokens", "create", "--data-dir", str(data))
    assert created.returncode == 0, created.stderr
    token = created.stdout.splitlines()[0]
    assert len(token) == 32
    listed = run(
        str(BIN / "livepatch-admin"), "tokens", "list", "--format", "json", "--data-dir", str(data)
    )
    [entry] = json.loads(listed.stdout)
    assert entry["machine_limit"] == 3 and entry["hint"] == token[:6]
    assert token not in listed.stdout


def test_data_dir_from_the_environment(tmp_path: Path) -> None:
    env_dir = tmp_path / "from-env"
    result = subprocess.run(
        [str(BIN / "livepatch-server"), "migrate"],
        capture_output=True,
        text=True,
        env={"LIVEPATCH_SERVER_DATA": str(env_dir), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (env_dir / "livepatch.db").exists()


def test_errors_are_one_sentence_and_an_exit_code(tmp_path: Path) -> None:
    result = run(
        str(BIN / "livepatch-admin"), "patches", "show", "lp-missing-1", "--data-dir", str(tmp_path)
    )
    assert result.returncode == 1
    assert result.stderr.startswith("livepatch-admin: No patch 'lp-missing-1'")
    bad = run(
        str(BIN / "livepatch-server"),
        "migrate",
        "--database",
        "mysql://x/y",
        "--data-dir",
        str(tmp_path),
    )
    assert bad.returncode == 2
    assert "Unsupported database 'mysql'" in bad.stderr


def test_publishing_a_module_name_in_use_for_the_kernel_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    module = tmp_path / "m.ko"
    module.write_bytes(b"\x7fELF" + b"\0" * 60 + b"\0name=livepatch_x\0")
    publish = [
        str(BIN / "livepatch-admin"),
        "publish",
        "--no-preflight",
        str(module),
        "--kernel",
        "6.1.0-56-amd64",
        "--cve",
        "CVE-2024-1086",
        "--severity",
        "high",
        "--description",
        "d",
        "--data-dir",
        str(data),
    ]
    assert run(str(BIN / "livepatch-server"), "migrate", "--data-dir", str(data)).returncode == 0
    first = run(*publish)
    assert first.returncode == 0, first.stderr
    again = run(*publish)
    assert again.returncode == 1
    assert again.stderr == (
        "livepatch-admin: livepatch_x is already the module name of lp-6.1.0-56-amd64-1 for "
        "kernel 6.1.0-56-amd64; a cumulative patch needs a new module name so the kernel can "
        "load it next to the one it replaces.\n"
    )
    listed = run(
        str(BIN / "livepatch-admin"), "patches", "list", "--format", "json", "--data-dir", str(data)
    )
    assert [p["patch_id"] for p in json.loads(listed.stdout)] == ["lp-6.1.0-56-amd64-1"]


@pytest.mark.slow
def test_the_server_applies_the_engine_by_itself(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "config.toml").write_text(
        "[server]\nengine_interval_seconds = 0.5\n"
        # No machine reports here: promotion needs no evidence.
        "[rollout]\ncanary_soak_hours = 0\nminimum_applied = 0\n"
    )
    module = tmp_path / "m.ko"
    module.write_bytes(b"\x7fELF" + b"\0" * 60 + b"\0name=livepatch_x\0")
    with live_server(data, f"sqlite:///{data}/livepatch.db", tls=False) as server:
        published = server.admin_json(
            "publish",
            "--no-preflight",
            str(module),
            "--kernel",
            "6.1.0-1-amd64",
            "--cve",
            "CVE-2024-1086",
            "--severity",
            "high",
            "--description",
            "d",
        )
        assert published["rollout"]["stage"] == "canary"
        deadline = time.monotonic() + 30
        stage = "canary"
        while time.monotonic() < deadline and stage == "canary":
            time.sleep(0.5)
            stage = server.admin_json("patches", "show", published["patch_id"])["rollout"]["stage"]
        assert stage == "moderate"
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'livepatch_promotions_total{stage="moderate",trigger="automatic"} 1' in metrics
