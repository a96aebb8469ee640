"""Throwaway PKIs for tests: a CA, signing certificates with chosen validity, foreign keys."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from livepatch.trust import certs

NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.UTC)


@dataclass(frozen=True)
class Identity:
    key: certs.SigningKey
    cert: x509.Certificate

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        key_path, cert_path = directory / f"{stem}-key.pem", directory / f"{stem}-cert.pem"
        key_path.write_bytes(certs.key_pem(self.key))
        cert_path.write_bytes(certs.cert_pem(self.cert))
        return key_path, cert_path


class Pki:
    """A CA that issues signing identities on demand (RSA 2048 keys: fast enough)."""

    def __init__(self, name: str = "Test", algorithm: certs.KeyAlgorithm = "rsa") -> None:
        self.algorithm = algorithm
        self.ca_key = certs.generate_key(algorithm, rsa_bits=2048)
        self.ca = certs.create_ca(
            self.ca_key,
            common_name=f"{name} CA",
            organization="livepatch tests",
            validity=certs.Validity.starting(NOW - datetime.timedelta(days=3650), 7300),
        )
        self.name = name

    def issue(
        self,
        common_name: str = "signer",
        *,
        start: datetime.datetime = NOW - datetime.timedelta(days=30),
        days: int = 365,
    ) -> Identity:
        key = certs.generate_key(self.algorithm, rsa_bits=2048)
        cert = certs.issue_signing_certificate(
            self.ca_key,
            self.ca,
            key,
            common_name=f"{self.name} {common_name}",
            organization="livepatch tests",
            validity=certs.Validity.starting(start, days),
        )
        return Identity(key, cert)
