"""X.509 material for module signing: key generation, the CA, the signing certificate.

The kernel identifies the key that made a module signature by the signer's
issuer and serial number (and can use the subject key identifier), so the
signing certificate carries both identifiers. It is issued by our own
module-signing CA so that rotation can hand out a new signing certificate
under the same root of authority; the kernel itself only needs the signing
certificate in a keyring.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KeyAlgorithm = Literal["rsa", "ecdsa"]
SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

RSA_CA_BITS = 4096
RSA_SIGNING_BITS = 3072
CLOCK_SKEW = datetime.timedelta(hours=1)
"""How far behind the issuer's clock a verifier's may be on a certificate's first day."""


def generate_key(
    algorithm: KeyAlgorithm = "rsa", *, rsa_bits: int = RSA_SIGNING_BITS
) -> SigningKey:
    """A new private key: RSA (what Debian's kernels verify) or ECDSA P-256."""
    if algorithm == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


@dataclass(frozen=True)
class Validity:
    not_before: datetime.datetime
    not_after: datetime.datetime

    @classmethod
    def starting(cls, start: datetime.datetime, days: int) -> Validity:
        return cls(start, start + datetime.timedelta(days=days))

    @classmethod
    def issued(cls, now: datetime.datetime, days: int) -> Validity:
        """Valid for `days` from `now`, and already for CLOCK_SKEW before it.

        A machine whose clock is a little behind the service's would otherwise
        refuse every module signed in the first minutes of a new certificate
        as "not yet valid".
        """
        return cls(now - CLOCK_SKEW, now + datetime.timedelta(days=days))


def create_ca(
    key: SigningKey, *, common_name: str, organization: str, validity: Validity
) -> x509.Certificate:
    """A self-signed CA that may only issue module-signing certificates (pathlen 0)."""
    name = _name(common_name, organization)
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity.not_before)
        .not_valid_after(validity.not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def issue_signing_certificate(
    ca_key: SigningKey,
    ca_cert: x509.Certificate,
    key: SigningKey,
    *,
    common_name: str,
    organization: str,
    validity: Validity,
) -> x509.Certificate:
    """A module-signing certificate (codeSigning, like the kernel's own x509.genkey)."""
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organization))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity.not_before)
        .not_valid_after(validity.not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def key_pem(key: SigningKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_key(pem: bytes) -> SigningKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise TypeError(f"unsupported key type {type(key).__name__}")
    return key


def common_name(cert: x509.Certificate) -> str:
    """The subject CN, or the whole subject when there is none."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()
