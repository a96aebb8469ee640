"""Our signer and verifier against the kernel's reference tools on a real ELF module.

``sign-file`` comes from Debian's linux-kbuild-6.1; ``openssl cms`` checks our
detached PKCS#7 independently.
"""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

import pytest

from livepatch.trust import errors, modsig
from tests.integration.trust.kmod import build_module
from tests.unit.trust.pki import NOW, Identity, Pki

SIGN_FILE = "/usr/lib/linux-kbuild-6.1/scripts/sign-file"


@pytest.fixture(scope="module")
def module() -> bytes:
    data = build_module().read_bytes()
    assert data.startswith(b"\x7fELF")
    return modsig.strip_signature(data)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki("Reference")


def sign_file(identity: Identity, body: bytes, tmp: Path, *flags: str) -> bytes:
    key, cert = identity.write(tmp, "id")
    target = tmp / "module.ko"
    target.write_bytes(body)
    subprocess.run([SIGN_FILE, *flags, "sha256", str(key), str(cert), str(target)], check=True)
    return target.read_bytes()


def test_signfile_output_verifies(pki: Pki, module: bytes, tmp_path: Path) -> None:
    identity = pki.issue("signing")
    signed = sign_file(identity, module, tmp_path)
    assert modsig.verify_module(signed, [identity.cert], now=NOW).name == "Reference signing"
    assert modsig.strip_signature(signed) == module


def test_signfile_key_identifier_form_verifies(pki: Pki, module: bytes, tmp_path: Path) -> None:
    identity = pki.issue("signing")
    signed = sign_file(identity, module, tmp_path, "-k")
    parsed = modsig.parse_signature(signed)
    assert parsed.signer.issuer is None and parsed.signer.key_identifier
    assert modsig.verify_module(signed, [identity.cert], now=NOW).certificate == identity.cert


def test_our_signature_has_signfile_structure(pki: Pki, module: bytes, tmp_path: Path) -> None:
    identity = pki.issue("signing")
    reference = sign_file(identity, module, tmp_path)
    ours = modsig.sign_module(module, identity.key, identity.cert)
    theirs_parsed, ours_parsed = modsig.parse_signature(reference), modsig.parse_signature(ours)
    assert ours_parsed.signer == theirs_parsed.signer
    assert ours_parsed.digest_algorithm == theirs_parsed.digest_algorithm
    assert ours_parsed.signature_algorithm == theirs_parsed.signature_algorithm
    # Same trailer but for sig_len (the PKCS#7 encodings differ by a few bytes).
    assert ours[-40:-32] == reference[-40:-32] and ours[-28:] == reference[-28:]
    # RSA PKCS#1 v1.5 is deterministic: the very same signature value.
    assert ours_parsed.signature == theirs_parsed.signature


def openssl_verifies(signature: Path, content: Path, cert: Path) -> bool:
    command = ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(signature)]
    command += ["-content", str(content), "-certfile", str(cert), "-nointern", "-noverify"]
    result = subprocess.run([*command, "-out", "/dev/null"], capture_output=True)
    return result.returncode == 0


def test_openssl_verifies_our_detached_pkcs7(pki: Pki, module: bytes, tmp_path: Path) -> None:
    identity = pki.issue("signing")
    _, cert = identity.write(tmp_path, "id")
    ours = modsig.sign_module(module, identity.key, identity.cert)
    parsed = modsig.parse_signature(ours)
    (tmp_path / "body").write_bytes(module)
    (tmp_path / "sig.der").write_bytes(parsed.pkcs7)
    assert openssl_verifies(tmp_path / "sig.der", tmp_path / "body", cert)
    (tmp_path / "body").write_bytes(module + b"\0")
    assert not openssl_verifies(tmp_path / "sig.der", tmp_path / "body", cert)


def test_signfile_with_foreign_key_is_unknown(module: bytes, tmp_path: Path) -> None:
    ours, theirs = Pki("Ours").issue("signing"), Pki("Foreign").issue("signing")
    signed = sign_file(theirs, module, tmp_path)
    with pytest.raises(errors.UnknownSigner):
        modsig.verify_module(signed, [ours.cert], now=NOW)


@pytest.mark.parametrize("where", ["start", "middle", "last body byte", "pkcs7"])
def test_tampered_signfile_module_is_refused(
    pki: Pki, module: bytes, tmp_path: Path, where: str
) -> None:
    identity = pki.issue("signing")
    signed = bytearray(sign_file(identity, module, tmp_path))
    offset = {
        "start": 0,
        "middle": len(module) // 2,
        "last body byte": len(module) - 1,
        "pkcs7": len(signed) - 41,
    }[where]
    signed[offset] ^= 0x20
    with pytest.raises(errors.BadSignature):
        modsig.verify_module(bytes(signed), [identity.cert], now=NOW)


@pytest.mark.parametrize("cut", [1, 20, 28, 40, 100])
def test_truncated_signfile_trailer_is_refused(
    pki: Pki, module: bytes, tmp_path: Path, cut: int
) -> None:
    identity = pki.issue("signing")
    signed = sign_file(identity, module, tmp_path)
    with pytest.raises((errors.NoSignature, errors.MalformedSignature)):
        modsig.verify_module(signed[:-cut], [identity.cert], now=NOW)
    garbled = signed[:-40] + b"\xff" * 12 + signed[-28:]
    with pytest.raises(errors.MalformedSignature):
        modsig.verify_module(garbled, [identity.cert], now=NOW)


def test_signfile_with_expired_certificate_is_refused(
    pki: Pki, module: bytes, tmp_path: Path
) -> None:
    identity = pki.issue("old", start=NOW - datetime.timedelta(days=500), days=30)
    signed = sign_file(identity, module, tmp_path)
    with pytest.raises(errors.CertificateExpired):
        modsig.verify_module(signed, [identity.cert], now=NOW)
