"""`livepatch-admin keys|sign|verify` through the real dispatcher."""

from __future__ import annotations

import datetime
import json
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from livepatch.server.admin import main
from livepatch.trust import certs, modsig
from livepatch.trust.keys import KeyDirectory
from livepatch.trust.repository import MetadataRepository

BODY = b"\x7fELF" + bytes(5000)


@pytest.fixture
def data_dir(tmp_path: Path, keys_template: Path) -> Path:
    shutil.copytree(keys_template, tmp_path / "keys")
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_init_creates_private_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "keys", "init", "--key-dir", str(tmp_path / "k"), "--algorithm", "ecdsa"
    )
    assert code == 0 and "valid until" in out
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o700
    files = [p for p in (tmp_path / "k").rglob("*") if p.is_file()]
    assert len(files) == 9
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    code, _, err = run(capsys, "keys", "init", "--key-dir", str(tmp_path / "k"))
    assert code == 1 and "already initialised" in err


def test_key_dir_defaults_to_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(capsys, "keys", "init", "--data-dir", str(tmp_path), "--algorithm", "ecdsa")
    assert code == 0 and KeyDirectory(tmp_path / "keys").exists()


def test_sign_then_verify(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = data_dir / "m.ko"
    module.write_bytes(BODY)
    code, out, _ = run(capsys, "sign", str(module), "--data-dir", str(data_dir))
    assert code == 0 and "Signed" in out
    code, out, _ = run(capsys, "verify", str(module), "--data-dir", str(data_dir))
    assert code == 0 and "signed by livepatch module signing" in out
    cert = data_dir / "cert.pem"
    cert.write_bytes(
        b"".join(
            certs.cert_pem(c.certificate)
            for c in KeyDirectory(data_dir / "keys").signing_certificates()
        )
    )
    code, out, _ = run(capsys, "verify", str(module), "--cert", str(cert))
    assert code == 0


def test_verify_failures_exit_non_zero_with_one_sentence(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = data_dir / "m.ko"
    module.write_bytes(BODY)
    code, _, err = run(capsys, "verify", str(module), "--data-dir", str(data_dir))
    assert code == 1 and "no appended signature" in err and err.count("\n") == 1
    run(capsys, "sign", str(module), "--data-dir", str(data_dir))
    data = bytearray(module.read_bytes())
    data[10] ^= 1
    module.write_bytes(bytes(data))
    code, _, err = run(capsys, "verify", str(module), "--data-dir", str(data_dir))
    assert code == 1 and "altered after signing" in err
    code, _, err = run(capsys, "verify", str(data_dir / "missing.ko"), "--data-dir", str(data_dir))
    assert code == 1 and "Cannot read" in err


def test_rotation_grace_and_revocation(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = data_dir / "m.ko"
    module.write_bytes(BODY)
    run(capsys, "sign", str(module), "--data-dir", str(data_dir))
    repo = MetadataRepository(
        data_dir / "blobs/metadata", data_dir / "blobs/targets", KeyDirectory(data_dir / "keys")
    )
    old_serial = KeyDirectory(data_dir / "keys").signing_certificates()[0].serial
    code, out, _ = run(
        capsys, "keys", "rotate-signing", "--data-dir", str(data_dir), "--grace-days", "10"
    )
    assert code == 0 and "Published" in out
    repo.reload()
    bundle = (repo.blob_path("keys/module-signing.pem")).read_bytes()
    assert bundle.count(b"BEGIN CERTIFICATE") == 2
    assert bundle.count(b"Grace-Until: ") == 1  # clients end the old one's trust on time
    # The old certificate is still trusted during the grace period.
    assert run(capsys, "verify", str(module), "--data-dir", str(data_dir))[0] == 0
    code, _, err = run(capsys, "keys", "revoke-signing", "--data-dir", str(data_dir), "nope")
    assert code == 1 and "No signing certificate" in err
    new_serial = next(
        c.serial
        for c in KeyDirectory(data_dir / "keys").signing_certificates()
        if c.status == "current"
    )
    code, _, err = run(capsys, "keys", "revoke-signing", "--data-dir", str(data_dir), new_serial)
    assert code == 1 and "rotate-signing" in err
    code, out, _ = run(capsys, "keys", "revoke-signing", "--data-dir", str(data_dir), old_serial)
    assert code == 0
    code, _, err = run(capsys, "verify", str(module), "--data-dir", str(data_dir))
    assert code == 1 and "revoked" in err
    # A module the current certificate signs still verifies after the revocation.
    fresh = data_dir / "fresh.ko"
    fresh.write_bytes(BODY)
    run(capsys, "sign", str(fresh), "--data-dir", str(data_dir))
    code, out, err = run(capsys, "verify", str(fresh), "--data-dir", str(data_dir))
    assert code == 0, err
    repo.reload()
    assert repo.blob_path("keys/module-signing.pem").read_bytes().count(b"BEGIN CERTIFICATE") == 1


def test_status_warns_before_expiry(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    KeyDirectory(data_dir / "keys").issue_signing_certificate(days=10)
    MetadataRepository(
        data_dir / "blobs/metadata", data_dir / "blobs/targets", KeyDirectory(data_dir / "keys")
    )
    code, out, _ = run(capsys, "keys", "status", "--data-dir", str(data_dir))
    assert code == 0
    assert re.search(r"warning: signing certificate \S+ \(current\) expires in (9|10) days", out)
    assert "warning: TUF" not in out  # timestamp and snapshot are re-signed by the server
    assert "TUF timestamp metadata" in out
    code, out, _ = run(capsys, "keys", "status", "--data-dir", str(data_dir), "--format", "json")
    document = json.loads(out)
    assert {"what", "not_after", "days_left", "warning"} <= set(document[0])
    assert document[0]["what"] == "TUF timestamp metadata"


def test_rotate_tuf_root(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "keys", "rotate-tuf", "root", "--data-dir", str(data_dir))
    assert code == 1 and "No published metadata" in err
    MetadataRepository(
        data_dir / "blobs/metadata", data_dir / "blobs/targets", KeyDirectory(data_dir / "keys")
    )
    code, out, _ = run(capsys, "keys", "rotate-tuf", "root", "--data-dir", str(data_dir))
    assert code == 0 and "root version 2" in out
    assert (data_dir / "blobs/metadata/2.root.json").exists()


def test_keys_command_imports_no_web_framework() -> None:
    code = (
        "import sys, livepatch.server.admin.keys;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('fastapi', 'sqlalchemy', 'tuf')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_new_signing_certificate_verifies_on_a_clock_running_behind(tmp_path: Path) -> None:
    issued_at = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.UTC)
    directory = KeyDirectory(tmp_path / "keys")
    directory.init(ca_bits=2048, signing_bits=2048, now=issued_at)
    key, cert = directory.current_signing()
    signed = modsig.sign_module(b"\x7fELF module body", key, cert)
    behind = issued_at - datetime.timedelta(minutes=10)
    assert modsig.verify_module(signed, [cert], now=behind).certificate == cert
    with pytest.raises(modsig.CertificateNotYetValid):
        modsig.verify_module(signed, [cert], now=issued_at - 2 * certs.CLOCK_SKEW)
