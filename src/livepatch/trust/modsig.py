"""Kernel module signatures: parse, verify, sign and strip, byte-compatible with Linux.

A signed module is ``body || pkcs7 || module_signature || MAGIC`` where
``module_signature`` is the kernel's 12-byte struct (include/linux/module_signature.h):
``algo, hash, id_type, signer_len, key_id_len`` (u8 each), three pad bytes and
``sig_len`` (big-endian u32). For PKCS#7 signatures ``id_type`` is 2 and every
other byte but ``sig_len`` is zero. The PKCS#7 is a detached SignedData over
``body`` with one SignerInfo, no certificates and no signed attributes, so the
signature is computed over the digest of the body itself.

Verification is a pure function of the bytes, the trusted certificates, the
revoked ones and a reference time: it hashes the body once (through a
memoryview, never copying it) and checks, in this order, structure,
algorithms, signer, revocation, signature, validity period. An error about
validity therefore means the module is authentic but its certificate is not
current.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.serialization import pkcs7

from livepatch.trust import der
from livepatch.trust.certs import SigningKey, common_name
from livepatch.trust.errors import (
    BadSignature,
    CertificateExpired,
    CertificateNotYetValid,
    CertificateRevoked,
    MalformedSignature,
    NoSignature,
    UnknownSigner,
    UnsupportedAlgorithm,
)

MAGIC = b"~Module signature appended~\n"
_TRAILER = struct.Struct(">BBBBB3sI")
TRAILER_SIZE = _TRAILER.size  # 12
PKEY_ID_PKCS7 = 2

_SIGNED_DATA = "1.2.840.113549.1.7.2"
_DATA = "1.2.840.113549.1.7.1"

# Digest OIDs we accept, with the hashlib name and the cryptography type.
_DIGESTS: dict[str, tuple[str, hashes.HashAlgorithm]] = {
    "2.16.840.1.101.3.4.2.1": ("sha256", hashes.SHA256()),
    "2.16.840.1.101.3.4.2.2": ("sha384", hashes.SHA384()),
    "2.16.840.1.101.3.4.2.3": ("sha512", hashes.SHA512()),
}
_WEAK_DIGESTS = {
    "1.3.14.3.2.26": "sha1",
    "1.2.840.113549.2.5": "md5",
    "2.16.840.1.101.3.4.2.4": "sha224",
}
# Signature OIDs: the key type they need and the digest they imply, if any.
_RSA_SIGNATURES: dict[str, str | None] = {
    "1.2.840.113549.1.1.1": None,  # rsaEncryption, what sign-file writes
    "1.2.840.113549.1.1.11": "sha256",
    "1.2.840.113549.1.1.12": "sha384",
    "1.2.840.113549.1.1.13": "sha512",
}
_ECDSA_SIGNATURES: dict[str, str | None] = {
    "1.2.840.10045.2.1": None,  # id-ecPublicKey
    "1.2.840.10045.4.3.2": "sha256",
    "1.2.840.10045.4.3.3": "sha384",
    "1.2.840.10045.4.3.4": "sha512",
}

_STREAM_CHUNK = 1 << 20

der.remember_oids(
    _SIGNED_DATA, _DATA, *_DIGESTS, *_WEAK_DIGESTS, *_RSA_SIGNATURES, *_ECDSA_SIGNATURES
)


_NAME_LABELS = {"2.5.4.3": "CN", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.6": "C"}


def describe_name(data: bytes) -> str:
    """A readable form of a DER Name for messages (best effort, never raises)."""
    try:
        parts = []
        name = der.children(der.Reader(data).read(der.SEQUENCE))
        for rdn in name.read_all(der.SET):
            for pair in der.children(rdn).read_all(der.SEQUENCE):
                fields = der.children(pair)
                oid = der.decode_oid(fields.read(der.OID).content)
                value = fields.read().content.decode("utf-8", "replace")
                parts.append(f"{_NAME_LABELS.get(oid, oid)}={value}")
        return ", ".join(parts) or "an empty name"
    except der.DerError:
        return data.hex()


@dataclass(frozen=True)
class SignerIdentity:
    """How the SignerInfo names its certificate: issuer + serial, or a key identifier."""

    issuer: bytes | None  # DER of the issuer Name
    serial: int | None
    key_identifier: bytes | None

    def describe(self) -> str:
        if self.issuer is not None and self.serial is not None:
            return f"issuer {describe_name(self.issuer)}, serial {self.serial:x}"
        return f"key identifier {(self.key_identifier or b'').hex()}"


@dataclass(frozen=True)
class ModuleSignature:
    """The appended signature of a module, parsed but not yet verified."""

    body_length: int
    pkcs7: bytes
    signer: SignerIdentity
    digest_algorithm: str  # OID
    signature_algorithm: str  # OID
    signature: bytes

    @property
    def digest_name(self) -> str:
        known = _DIGESTS.get(self.digest_algorithm)
        if known:
            return known[0]
        return _WEAK_DIGESTS.get(self.digest_algorithm, self.digest_algorithm)

    @property
    def key_type(self) -> str:
        if self.signature_algorithm in _RSA_SIGNATURES:
            return "rsa"
        if self.signature_algorithm in _ECDSA_SIGNATURES:
            return "ecdsa"
        return self.signature_algorithm


@dataclass(frozen=True)
class Signer:
    """Who signed a module that verified."""

    name: str
    certificate: x509.Certificate

    def __str__(self) -> str:
        return self.name


# Parsing --------------------------------------------------------------------------


def _split_trailer(trailer: bytes, total: int) -> tuple[int, int]:
    """(body length, PKCS#7 length) from the 12 trailer bytes before the magic."""
    if total < len(MAGIC) + TRAILER_SIZE:
        raise MalformedSignature("the signature trailer is truncated")
    algo, hash_, id_type, signer_len, key_id_len, pad, sig_len = _TRAILER.unpack(trailer)
    if id_type != PKEY_ID_PKCS7:
        raise MalformedSignature(f"signature type {id_type} is not PKCS#7 (2)")
    if algo or hash_ or signer_len or key_id_len or any(pad):
        raise MalformedSignature("unused trailer fields are not zero")
    remaining = total - len(MAGIC) - TRAILER_SIZE
    if sig_len == 0 or sig_len >= remaining:
        raise MalformedSignature(
            f"the trailer declares {sig_len} signature bytes but {remaining} precede it"
        )
    return remaining - sig_len, sig_len


def _trailer_of(data: bytes) -> bytes:
    end = len(data) - len(MAGIC)
    return data[max(end - TRAILER_SIZE, 0) : end]


def parse_signature(data: bytes) -> ModuleSignature:
    """Parse the appended signature of a module held in memory."""
    if not data.endswith(MAGIC):
        raise NoSignature()
    body_length, sig_len = _split_trailer(_trailer_of(data), len(data))
    return parse_pkcs7(data[body_length : body_length + sig_len], body_length)


def parse_pkcs7(blob: bytes, body_length: int) -> ModuleSignature:
    """Parse the DER PKCS#7 SignedData the kernel expects (detached, one signer)."""
    try:
        return _parse_pkcs7(blob, body_length)
    except der.DerError as error:
        raise MalformedSignature(f"bad PKCS#7 structure: {error}") from error


def _parse_pkcs7(blob: bytes, body_length: int) -> ModuleSignature:
    outer = der.Reader(blob)
    content_info = der.children(outer.read(der.SEQUENCE))
    outer.expect_end()
    if der.decode_oid(content_info.read(der.OID).content) != _SIGNED_DATA:
        raise der.DerError("not a SignedData")
    explicit = der.children(content_info.read(der.context(0)))
    content_info.expect_end()
    signed_data = der.children(explicit.read(der.SEQUENCE))
    explicit.expect_end()

    if _small_integer(signed_data) not in (1, 3):
        raise der.DerError("unknown SignedData version")
    digest_set = der.children(signed_data.read(der.SET))
    digests = [_algorithm(digest_set)]
    while not digest_set.at_end():
        digests.append(_algorithm(digest_set))
    encapsulated = der.children(signed_data.read(der.SEQUENCE))
    if der.decode_oid(encapsulated.read(der.OID).content) != _DATA:
        raise der.DerError("the signed content is not data")
    if not encapsulated.at_end():
        raise der.DerError("the signature embeds its content instead of being detached")
    for optional in (der.context(0), der.context(1)):  # certificates, crls
        if signed_data.peek_tag() == optional:
            signed_data.read(optional)
    signer_infos = der.children(signed_data.read(der.SET)).read_all(der.SEQUENCE)
    signed_data.expect_end()
    if len(signer_infos) != 1:
        raise der.DerError(f"expected one signer, found {len(signer_infos)}")
    signer_info = der.children(signer_infos[0])

    version = _small_integer(signer_info)
    if version == 1:
        issuer_and_serial = der.children(signer_info.read(der.SEQUENCE))
        issuer = issuer_and_serial.read(der.SEQUENCE).encoded
        serial = der.decode_integer(issuer_and_serial.read(der.INTEGER).content)
        issuer_and_serial.expect_end()
        identity = SignerIdentity(issuer, serial, None)
    elif version == 3:
        key_id = signer_info.read(der.context(0, constructed=False)).content
        identity = SignerIdentity(None, None, key_id)
    else:
        raise der.DerError("unknown SignerInfo version")
    digest = _algorithm(signer_info)
    if digests != [digest]:
        raise der.DerError("the digest algorithms do not match the signer's")
    if signer_info.peek_tag() == der.context(0):
        raise UnsupportedAlgorithm("signed attributes, which the kernel does not accept")
    signature_algorithm = _algorithm(signer_info)
    signature = signer_info.read(der.OCTET_STRING).content
    if not signer_info.at_end():
        signer_info.read(der.context(1))  # unsigned attributes carry nothing we use
    signer_info.expect_end()
    if not signature:
        raise der.DerError("empty signature")
    return ModuleSignature(body_length, blob, identity, digest, signature_algorithm, signature)


def _small_integer(reader: der.Reader) -> int:
    return der.decode_integer(reader.read(der.INTEGER).content)


_KNOWN_ALGORITHMS = {*_DIGESTS, *_WEAK_DIGESTS, *_RSA_SIGNATURES, *_ECDSA_SIGNATURES}


def _algorithm(reader: der.Reader) -> str:
    """An algorithm OID; the algorithms we know take no parameters but an optional NULL.

    Unknown algorithms may carry any parameters: they are refused later by OID.
    """
    oid, parameters = der.read_algorithm(reader)
    unexpected = parameters is not None and (parameters.tag != der.NULL or parameters.content)
    if oid in _KNOWN_ALGORITHMS and unexpected:
        raise der.DerError(f"unexpected parameters for algorithm {oid}")
    return oid


def strip_signature(data: bytes) -> bytes:
    """The module without its appended signature (unchanged if it has none)."""
    if not data.endswith(MAGIC):
        return data
    body_length, _ = _split_trailer(_trailer_of(data), len(data))
    return data[:body_length]


# Verification ---------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _issuer_der(cert: x509.Certificate) -> bytes:
    """The issuer Name exactly as encoded in the certificate (the kernel compares bytes)."""
    tbs = der.children(der.Reader(cert.tbs_certificate_bytes).read(der.SEQUENCE))
    if tbs.peek_tag() == der.context(0):
        tbs.read()
    tbs.read(der.INTEGER)
    tbs.read(der.SEQUENCE)
    return tbs.read(der.SEQUENCE).encoded


def _subject_key_identifier(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


def _matches(cert: x509.Certificate, identity: SignerIdentity) -> bool:
    if identity.issuer is not None:
        return cert.serial_number == identity.serial and _issuer_der(cert) == identity.issuer
    return identity.key_identifier == _subject_key_identifier(cert)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER, the name revocation lists use."""
    return cert.fingerprint(hashes.SHA256()).hex()


def _check_algorithms(signature: ModuleSignature) -> tuple[str, hashes.HashAlgorithm]:
    digest = _DIGESTS.get(signature.digest_algorithm)
    if digest is None:
        raise UnsupportedAlgorithm(f"digest {signature.digest_name}")
    oid = signature.signature_algorithm
    if oid in _RSA_SIGNATURES:
        implied = _RSA_SIGNATURES[oid]
    elif oid in _ECDSA_SIGNATURES:
        implied = _ECDSA_SIGNATURES[oid]
    else:
        raise UnsupportedAlgorithm(f"signature algorithm {oid}")
    if implied is not None and implied != digest[0]:
        raise MalformedSignature("the signature and digest algorithms disagree")
    return digest


def _signature_holds(
    signature: ModuleSignature,
    cert: x509.Certificate,
    digest: bytes,
    algorithm: hashes.HashAlgorithm,
) -> bool:
    key = cert.public_key()
    prehashed = utils.Prehashed(algorithm)
    try:
        if isinstance(key, rsa.RSAPublicKey) and signature.key_type == "rsa":
            key.verify(signature.signature, digest, padding.PKCS1v15(), prehashed)
        elif isinstance(key, ec.EllipticCurvePublicKey) and signature.key_type == "ecdsa":
            key.verify(signature.signature, digest, ec.ECDSA(prehashed))
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _check_validity(cert: x509.Certificate, name: str, now: datetime.datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("the reference time must be timezone-aware")
    if now > cert.not_valid_after_utc:
        raise CertificateExpired(name, cert.not_valid_after_utc.isoformat())
    if now < cert.not_valid_before_utc:
        raise CertificateNotYetValid(name, cert.not_valid_before_utc.isoformat())


def verify_signature(
    signature: ModuleSignature,
    hash_body: Callable[[str], bytes],
    trusted: Sequence[x509.Certificate],
    *,
    now: datetime.datetime,
    revoked: Iterable[x509.Certificate] = (),
) -> Signer:
    """Check a parsed signature; ``hash_body(name)`` digests the body with hashlib ``name``."""
    hash_name, algorithm = _check_algorithms(signature)
    cert = next((c for c in trusted if _matches(c, signature.signer)), None)
    if cert is None:
        raise UnknownSigner(signature.signer.describe())
    name = common_name(cert)
    revoked_fingerprints = {fingerprint(r) for r in revoked}
    if revoked_fingerprints and fingerprint(cert) in revoked_fingerprints:
        raise CertificateRevoked(name)
    if not _signature_holds(signature, cert, hash_body(hash_name), algorithm):
        raise BadSignature(name)
    _check_validity(cert, name, now)
    return Signer(name, cert)


def verify_module(
    data: bytes,
    trusted: Sequence[x509.Certificate],
    *,
    now: datetime.datetime,
    revoked: Iterable[x509.Certificate] = (),
) -> Signer:
    """Verify a module held in memory; returns its signer or raises a ModuleSignatureError."""
    signature = parse_signature(data)
    body = memoryview(data)[: signature.body_length]
    return verify_signature(
        signature, lambda name: hashlib.new(name, body).digest(), trusted, now=now, revoked=revoked
    )


def verify_module_file(
    path: Path,
    trusted: Sequence[x509.Certificate],
    *,
    now: datetime.datetime,
    revoked: Iterable[x509.Certificate] = (),
) -> Signer:
    """Verify a module on disk without reading it into memory at once."""
    with path.open("rb") as stream:
        size = stream.seek(0, 2)
        tail = _read_at(stream, max(size - len(MAGIC) - TRAILER_SIZE, 0), size)
        if not tail.endswith(MAGIC):
            raise NoSignature()
        body_length, sig_len = _split_trailer(tail[:TRAILER_SIZE], size)
        signature = parse_pkcs7(_read_at(stream, body_length, body_length + sig_len), body_length)

        def hash_body(name: str) -> bytes:
            digest = hashlib.new(name)
            stream.seek(0)
            left = body_length
            while left:
                chunk = stream.read(min(_STREAM_CHUNK, left))
                if not chunk:
                    raise MalformedSignature("the module shrank while it was being read")
                digest.update(chunk)
                left -= len(chunk)
            return digest.digest()

        return verify_signature(signature, hash_body, trusted, now=now, revoked=revoked)


def _read_at(stream: BinaryIO, start: int, end: int) -> bytes:
    stream.seek(start)
    return stream.read(end - start)


# Signing --------------------------------------------------------------------------


def build_trailer(sig_len: int) -> bytes:
    return _TRAILER.pack(0, 0, PKEY_ID_PKCS7, 0, 0, b"\0\0\0", sig_len) + MAGIC


def sign_module(data: bytes, key: SigningKey, cert: x509.Certificate) -> bytes:
    """Sign like ``scripts/sign-file``: detached PKCS#7, SHA-256, no certs, no attributes.

    An existing signature is replaced, so re-signing a module never stacks
    signatures (the kernel only reads the last one).
    """
    body = strip_signature(data)
    builder = pkcs7.PKCS7SignatureBuilder().set_data(body)
    if isinstance(key, rsa.RSAPrivateKey):
        builder = builder.add_signer(cert, key, hashes.SHA256(), rsa_padding=padding.PKCS1v15())
    else:
        builder = builder.add_signer(cert, key, hashes.SHA256())
    blob = builder.sign(
        serialization.Encoding.DER,
        [
            pkcs7.PKCS7Options.DetachedSignature,
            pkcs7.PKCS7Options.NoCerts,
            pkcs7.PKCS7Options.NoAttributes,
            pkcs7.PKCS7Options.Binary,
        ],
    )
    return body + blob + build_trailer(len(blob))
