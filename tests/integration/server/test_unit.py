"""The systemd unit `livepatch-server install-unit` writes: valid, and hardened.

Checked with the host's systemd tools offline (``systemd-analyze verify`` and
``security --offline``); running it under a booted systemd is left to a VM.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SERVER = Path(sys.executable).with_name("livepatch-server")


def install(tmp_path: Path, *extra: str) -> tuple[Path, str]:
    result = subprocess.run(
        [str(SERVER), "install-unit", "--prefix", str(tmp_path), *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return tmp_path / "etc/systemd/system/livepatch-server.service", result.stdout


def test_the_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    unit, printed = install(
        tmp_path, "--tls-cert", str(cert), "--tls-key", str(key), "--port", "443"
    )
    text = unit.read_text()
    for line in (
        "User=livepatch-server",
        "ProtectSystem=strict",
        "StateDirectory=livepatch-server",
        "StateDirectoryMode=0700",
        "Environment=LIVEPATCH_SERVER_DATA=/var/lib/livepatch-server",
        "LimitNOFILE=65536",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        f"LoadCredential=tls-key:{key}",
    ):
        assert line in text.splitlines(), line
    assert f"ExecStart={SERVER} serve --host 0.0.0.0 --port 443 --tls-cert %d/tls-cert" in text
    sysusers = tmp_path / "etc/sysusers.d/livepatch-server.conf"
    assert sysusers.read_text().startswith("u livepatch-server - ")
    assert "admins create NAME --role admin" in printed

    verified = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert verified.returncode == 0 and verified.stderr == "", verified.stderr
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(
        r"Overall exposure level for livepatch-server.service: ([0-9.]+)", security.stdout
    )
    assert found is not None, security.stdout[-2000:] + security.stderr
    assert float(found.group(1)) <= 2.0, security.stdout


def test_a_broken_unit_would_fail_the_check(tmp_path: Path) -> None:
    unit, _ = install(tmp_path)
    broken = tmp_path / "broken.service"
    broken.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=bogus"))
    verified = subprocess.run(
        ["systemd-analyze", "verify", str(broken)], capture_output=True, text=True, timeout=60
    )
    assert "Failed to parse protect system value" in verified.stderr


def test_a_tls_key_needs_its_certificate(tmp_path: Path) -> None:
    half = subprocess.run(
        [str(SERVER), "install-unit", "--prefix", str(tmp_path), "--tls-key", "k.pem"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert half.returncode != 0 and "both --tls-cert and --tls-key" in half.stderr
