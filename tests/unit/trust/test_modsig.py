"""Module signatures: our signer and verifier against each other and every refusal."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import struct
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import pkcs7

from livepatch.trust import certs, errors, modsig
from tests.unit.trust.pki import NOW, Identity, Pki

BODY = bytes(range(256)) * 40 + b"\x7fELF tail"


def sign(identity: Identity, body: bytes = BODY) -> bytes:
    return modsig.sign_module(body, identity.key, identity.cert)


def with_pkcs7(body: bytes, blob: bytes) -> bytes:
    return body + blob + modsig.build_trailer(len(blob))


def test_signed_module_verifies_and_names_its_signer(signer: Identity) -> None:
    result = modsig.verify_module(sign(signer), [signer.cert], now=NOW)
    assert result.name == "Ours signing"
    assert result.certificate == signer.cert


def test_ecdsa_signature_verifies(ecdsa: Identity) -> None:
    assert modsig.verify_module(sign(ecdsa), [ecdsa.cert], now=NOW).name == "Elliptic signing"


def test_trailer_has_kernel_layout(signer: Identity) -> None:
    data = sign(signer)
    assert data.startswith(BODY)
    assert data.endswith(b"~Module signature appended~\n")
    trailer = data[-40:-28]
    algo, hash_, id_type, signer_len, key_id_len, pad, sig_len = struct.unpack(">BBBBB3sI", trailer)
    assert (algo, hash_, id_type, signer_len, key_id_len, pad) == (0, 0, 2, 0, 0, b"\0\0\0")
    assert len(BODY) + sig_len + 40 == len(data)
    parsed = modsig.parse_signature(data)
    assert parsed.body_length == len(BODY)
    assert parsed.digest_name == "sha256"
    assert parsed.key_type == "rsa"
    assert parsed.signer.serial == signer.cert.serial_number


def test_file_verification_matches_memory(signer: Identity, tmp_path: Path) -> None:
    path = tmp_path / "m.ko"
    path.write_bytes(sign(signer, BODY * 50))
    assert modsig.verify_module_file(path, [signer.cert], now=NOW).name == "Ours signing"
    path.write_bytes(BODY)
    with pytest.raises(errors.NoSignature):
        modsig.verify_module_file(path, [signer.cert], now=NOW)


def test_signer_is_found_among_several(signer: Identity, foreign: Identity) -> None:
    trusted = [foreign.cert, signer.cert]
    assert modsig.verify_module(sign(signer), trusted, now=NOW).certificate == signer.cert


def test_unsigned_module_is_refused(signer: Identity) -> None:
    with pytest.raises(errors.NoSignature, match="no appended signature"):
        modsig.verify_module(BODY, [signer.cert], now=NOW)


@pytest.mark.parametrize("offset", [0, 1, 100, len(BODY) // 2, len(BODY) - 1])
def test_tampered_body_is_refused(signer: Identity, offset: int) -> None:
    data = bytearray(sign(signer))
    data[offset] ^= 0x01
    with pytest.raises(errors.BadSignature, match="altered after signing"):
        modsig.verify_module(bytes(data), [signer.cert], now=NOW)


def test_tampered_signature_value_is_refused(signer: Identity) -> None:
    data = bytearray(sign(signer))
    data[-41] ^= 0x80  # the last byte of the PKCS#7 is the last byte of the signature
    with pytest.raises(errors.BadSignature):
        modsig.verify_module(bytes(data), [signer.cert], now=NOW)


def test_foreign_signer_is_unknown(signer: Identity, foreign: Identity) -> None:
    with pytest.raises(errors.UnknownSigner, match="not trusted"):
        modsig.verify_module(sign(foreign), [signer.cert], now=NOW)


def test_same_serial_other_issuer_is_unknown(signer: Identity) -> None:
    """Matching is by issuer and serial together, never by serial alone."""
    other = Pki("Impostor")
    key = certs.generate_key(rsa_bits=2048)
    impostor_cert = (
        x509.CertificateBuilder()
        .subject_name(signer.cert.subject)
        .issuer_name(other.ca.subject)
        .public_key(key.public_key())
        .serial_number(signer.cert.serial_number)
        .not_valid_before(signer.cert.not_valid_before_utc)
        .not_valid_after(signer.cert.not_valid_after_utc)
        .sign(other.ca_key, hashes.SHA256())
    )
    module = sign(Identity(key, impostor_cert))
    parsed = modsig.parse_signature(module)
    assert parsed.signer.serial == signer.cert.serial_number
    # Matched by serial alone it would reach the signature check and fail as BadSignature.
    with pytest.raises(errors.UnknownSigner, match="Impostor CA"):
        modsig.verify_module(module, [signer.cert], now=NOW)


def test_expired_certificate_is_refused(expired: Identity) -> None:
    with pytest.raises(errors.CertificateExpired, match="expired on"):
        modsig.verify_module(sign(expired), [expired.cert], now=NOW)


def test_not_yet_valid_certificate_is_refused(future: Identity) -> None:
    with pytest.raises(errors.CertificateNotYetValid, match="not valid before"):
        modsig.verify_module(sign(future), [future.cert], now=NOW)


def test_reference_time_decides_validity(expired: Identity) -> None:
    then = expired.cert.not_valid_before_utc + datetime.timedelta(days=1)
    assert modsig.verify_module(sign(expired), [expired.cert], now=then).name == "Ours expired"


def test_tampered_module_with_expired_certificate_is_reported_as_tampered(
    expired: Identity,
) -> None:
    data = bytearray(sign(expired))
    data[3] ^= 0xFF
    with pytest.raises(errors.BadSignature):
        modsig.verify_module(bytes(data), [expired.cert], now=NOW)


def test_revoked_certificate_is_refused(signer: Identity) -> None:
    with pytest.raises(errors.CertificateRevoked, match="revoked"):
        modsig.verify_module(sign(signer), [signer.cert], now=NOW, revoked=[signer.cert])


def test_revoking_one_certificate_leaves_the_others_trusted(pki: Pki, signer: Identity) -> None:
    """A revocation refuses what that certificate signed, not every module."""
    successor = pki.issue("successor")
    trusted = [signer.cert, successor.cert]
    verified = modsig.verify_module(sign(successor), trusted, now=NOW, revoked=[signer.cert])
    assert verified.certificate == successor.cert
    with pytest.raises(errors.CertificateRevoked):
        modsig.verify_module(sign(signer), trusted, now=NOW, revoked=[signer.cert])


def test_naive_reference_time_is_a_programming_error(signer: Identity) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        modsig.verify_module(sign(signer), [signer.cert], now=datetime.datetime(2026, 1, 1))


def test_strip_and_replace(signer: Identity, foreign: Identity) -> None:
    signed = sign(signer)
    assert modsig.strip_signature(signed) == BODY
    assert modsig.strip_signature(BODY) == BODY
    resigned = modsig.sign_module(signed, foreign.key, foreign.cert)
    assert modsig.strip_signature(resigned) == BODY
    assert resigned.count(modsig.MAGIC) == 1
    assert modsig.verify_module(resigned, [foreign.cert], now=NOW).name == "Foreign signing"


@pytest.mark.parametrize(
    ("trailer", "message"),
    [
        (struct.pack(">BBBBB3sI", 0, 0, 1, 0, 0, b"\0\0\0", 10), "not PKCS#7"),
        (struct.pack(">BBBBB3sI", 1, 0, 2, 0, 0, b"\0\0\0", 10), "not zero"),
        (struct.pack(">BBBBB3sI", 0, 0, 2, 0, 0, b"\0\1\0", 10), "not zero"),
        (struct.pack(">BBBBB3sI", 0, 0, 2, 0, 0, b"\0\0\0", 0), "declares 0"),
        (struct.pack(">BBBBB3sI", 0, 0, 2, 0, 0, b"\0\0\0", 2**32 - 1), "declares"),
    ],
)
def test_bad_trailer_is_malformed(trailer: bytes, message: str) -> None:
    with pytest.raises(errors.MalformedSignature, match=message):
        modsig.parse_signature(BODY + trailer + modsig.MAGIC)


def test_magic_alone_is_malformed() -> None:
    with pytest.raises(errors.MalformedSignature, match="truncated"):
        modsig.parse_signature(modsig.MAGIC)
    with pytest.raises(errors.MalformedSignature, match="truncated"):
        modsig.strip_signature(b"\0" * 5 + modsig.MAGIC)


def test_garbage_pkcs7_is_malformed() -> None:
    with pytest.raises(errors.MalformedSignature, match="PKCS#7"):
        modsig.parse_signature(with_pkcs7(BODY, b"\x30\x03\x02\x01\x01"))


def _builder(identity: Identity, body: bytes = BODY) -> pkcs7.PKCS7SignatureBuilder:
    return pkcs7.PKCS7SignatureBuilder().set_data(body)


OPTIONS = [
    pkcs7.PKCS7Options.DetachedSignature,
    pkcs7.PKCS7Options.NoCerts,
    pkcs7.PKCS7Options.NoAttributes,
    pkcs7.PKCS7Options.Binary,
]


def test_sha224_is_unsupported(signer: Identity) -> None:
    blob = (
        _builder(signer)
        .add_signer(signer.cert, signer.key, hashes.SHA224(), rsa_padding=padding.PKCS1v15())  # type: ignore[arg-type]
        .sign(serialization.Encoding.DER, OPTIONS)
    )
    with pytest.raises(errors.UnsupportedAlgorithm, match="sha224"):
        modsig.verify_module(with_pkcs7(BODY, blob), [signer.cert], now=NOW)


def test_sha512_is_supported(signer: Identity) -> None:
    blob = (
        _builder(signer)
        .add_signer(signer.cert, signer.key, hashes.SHA512(), rsa_padding=padding.PKCS1v15())  # type: ignore[arg-type]
        .sign(serialization.Encoding.DER, OPTIONS)
    )
    assert modsig.verify_module(with_pkcs7(BODY, blob), [signer.cert], now=NOW).name


def test_rsa_pss_is_unsupported(signer: Identity) -> None:
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    blob = (
        _builder(signer)
        .add_signer(signer.cert, signer.key, hashes.SHA256(), rsa_padding=pss)  # type: ignore[arg-type]
        .sign(serialization.Encoding.DER, OPTIONS)
    )
    with pytest.raises(errors.UnsupportedAlgorithm, match="signature algorithm"):
        modsig.verify_module(with_pkcs7(BODY, blob), [signer.cert], now=NOW)


def test_signed_attributes_are_unsupported(signer: Identity) -> None:
    blob = (
        _builder(signer)
        .add_signer(signer.cert, signer.key, hashes.SHA256())  # type: ignore[arg-type]
        .sign(
            serialization.Encoding.DER,
            [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary],
        )
    )
    with pytest.raises(errors.UnsupportedAlgorithm, match="signed attributes"):
        modsig.verify_module(with_pkcs7(BODY, blob), [signer.cert], now=NOW)


def test_embedded_content_is_malformed(signer: Identity) -> None:
    blob = (
        _builder(signer)
        .add_signer(signer.cert, signer.key, hashes.SHA256())  # type: ignore[arg-type]
        .sign(
            serialization.Encoding.DER,
            [pkcs7.PKCS7Options.NoCerts, pkcs7.PKCS7Options.NoAttributes],
        )
    )
    with pytest.raises(errors.MalformedSignature, match="detached"):
        modsig.verify_module(with_pkcs7(BODY, blob), [signer.cert], now=NOW)


def test_embedded_certificates_are_not_trusted(signer: Identity, foreign: Identity) -> None:
    """A certificate inside the PKCS#7 never vouches for itself."""
    blob = (
        _builder(foreign)
        .add_signer(foreign.cert, foreign.key, hashes.SHA256())  # type: ignore[arg-type]
        .sign(
            serialization.Encoding.DER,
            [
                pkcs7.PKCS7Options.DetachedSignature,
                pkcs7.PKCS7Options.NoAttributes,
                pkcs7.PKCS7Options.Binary,
            ],
        )
    )
    with pytest.raises(errors.UnknownSigner):
        modsig.verify_module(with_pkcs7(BODY, blob), [signer.cert], now=NOW)


def test_algorithm_that_does_not_fit_the_key_is_a_bad_signature(signer: Identity) -> None:
    """An ECDSA signature naming a certificate that holds an RSA key cannot verify."""
    parsed = modsig.parse_signature(sign(signer))
    forged = dataclasses.replace(parsed, signature_algorithm="1.2.840.10045.4.3.2")
    with pytest.raises(errors.BadSignature):
        modsig.verify_signature(
            forged, lambda name: hashlib.new(name, BODY).digest(), [signer.cert], now=NOW
        )


def test_algorithms_that_disagree_are_malformed(signer: Identity) -> None:
    parsed = modsig.parse_signature(sign(signer))
    forged = dataclasses.replace(parsed, signature_algorithm="1.2.840.113549.1.1.13")
    with pytest.raises(errors.MalformedSignature, match="disagree"):
        modsig.verify_signature(
            forged, lambda name: hashlib.new(name, BODY).digest(), [signer.cert], now=NOW
        )


def test_errors_have_codes_and_one_sentence(signer: Identity, foreign: Identity) -> None:
    with pytest.raises(errors.ModuleSignatureError) as caught:
        modsig.verify_module(sign(foreign), [signer.cert], now=NOW)
    assert caught.value.code == "module-signer-unknown"
    text = str(caught.value)
    assert text.endswith(".") and "\n" not in text
