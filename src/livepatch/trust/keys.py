"""The key directory: module-signing CA and certificates, TUF role keys, and their lifecycle.

Layout (directories 0700, files 0600)::

    <key-dir>/module-signing/ca-key.pem, ca-cert.pem      the module-signing CA
    <key-dir>/module-signing/<serial>.key.pem, .cert.pem  each signing certificate
    <key-dir>/module-signing/state.json                   which one is current,
                                                          which are in their grace
                                                          period, which are revoked
    <key-dir>/tuf/<role>.pem                              TUF role keys (Ed25519)
    <key-dir>/tuf/<role>.next.pem                         a key being rotated in
    <key-dir>/tuf/retired/<role>-<keyid>.pem              keys rotated out

Signing-certificate rotation issues a new certificate and keeps the previous
one trusted until its grace period ends, so modules signed before the
rotation keep loading while they are re-signed; the published bundle names
each retiring certificate's grace end, so clients stop trusting it on time by
their own clock. Revocation ends trust at once.
A TUF key rotation is two-phase (``prepare_rotation`` then
``complete_rotation``) so that a failed publish can simply be retried.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from securesystemslib.signer import CryptoSigner  # type: ignore[attr-defined]  # re-exported

from livepatch.trust import certs
from livepatch.trust.certbundle import BundleEntry
from livepatch.trust.errors import KeyDirectoryError
from livepatch.trust.files import make_private_directory, write_atomic

Role = Literal["root", "targets", "snapshot", "timestamp"]
ROLES: tuple[Role, ...] = ("root", "targets", "snapshot", "timestamp")
DEFAULT_DATA_DIR = Path("/var/lib/livepatch-server")
CA_DAYS = 3650
SIGNING_DAYS = 730
GRACE_DAYS = 30
ORGANIZATION = "livepatch"

Status = Literal["current", "retiring", "revoked"]


def default_key_dir(data_dir: Path = DEFAULT_DATA_DIR) -> Path:
    return data_dir / "keys"


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


@dataclass(frozen=True)
class SigningCertificate:
    """A module-signing certificate and where it stands."""

    serial: str
    certificate: x509.Certificate
    status: Status
    grace_until: datetime.datetime | None
    revoked_at: datetime.datetime | None

    def trusted_at(self, now: datetime.datetime) -> bool:
        if self.status == "current":
            return True
        if self.status == "retiring":
            return self.grace_until is not None and now <= self.grace_until
        return False


@dataclass(frozen=True)
class Expiry:
    """One thing that expires, for ``keys status``."""

    what: str
    subject: str
    not_after: datetime.datetime

    def days_left(self, now: datetime.datetime) -> float:
        return (self.not_after - now).total_seconds() / 86400


class KeyDirectory:
    """All private key material of a patch service, in one directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._signing = path / "module-signing"
        self._tuf = path / "tuf"

    # Initialisation -----------------------------------------------------------

    def exists(self) -> bool:
        return (self._signing / "state.json").exists()

    def init(
        self,
        *,
        algorithm: certs.KeyAlgorithm = "rsa",
        organization: str = ORGANIZATION,
        ca_days: int = CA_DAYS,
        signing_days: int = SIGNING_DAYS,
        ca_bits: int = certs.RSA_CA_BITS,
        signing_bits: int = certs.RSA_SIGNING_BITS,
        now: datetime.datetime | None = None,
    ) -> None:
        """Create the CA, a first signing certificate and the four TUF role keys.

        ``ca_bits`` and ``signing_bits`` size RSA keys (tests use small ones).
        """
        if self.exists():
            raise KeyDirectoryError(
                f"The key directory {self.path} is already initialised; use 'keys status' "
                "to inspect it or rotate its keys instead."
            )
        now = now or _utcnow()
        make_private_directory(self.path)
        make_private_directory(self._signing)
        make_private_directory(self._tuf)
        ca_key = certs.generate_key(algorithm, rsa_bits=ca_bits)
        ca = certs.create_ca(
            ca_key,
            common_name=f"{organization} module-signing CA",
            organization=organization,
            validity=certs.Validity.issued(now, ca_days),
        )
        write_atomic(self._signing / "ca-key.pem", certs.key_pem(ca_key))
        write_atomic(self._signing / "ca-cert.pem", certs.cert_pem(ca))
        self._write_state(
            {
                "algorithm": algorithm,
                "rsa_bits": signing_bits,
                "organization": organization,
                "certs": {},
            }
        )
        self.issue_signing_certificate(days=signing_days, now=now)
        for role in ROLES:
            write_atomic(self._tuf / f"{role}.pem", _new_tuf_key())

    # Module signing -----------------------------------------------------------

    def _read_state(self) -> dict[str, Any]:
        try:
            state: dict[str, Any] = json.loads((self._signing / "state.json").read_bytes())
        except FileNotFoundError:
            raise KeyDirectoryError(
                f"No keys found in {self.path}; run 'livepatch-admin keys init' first."
            ) from None
        return state

    def _write_state(self, state: dict[str, Any]) -> None:
        write_atomic(self._signing / "state.json", json.dumps(state, indent=2).encode())

    def ca(self) -> tuple[certs.SigningKey, x509.Certificate]:
        self._read_state()
        key = certs.load_key((self._signing / "ca-key.pem").read_bytes())
        cert = x509.load_pem_x509_certificate((self._signing / "ca-cert.pem").read_bytes())
        return key, cert

    def issue_signing_certificate(
        self,
        *,
        days: int = SIGNING_DAYS,
        grace_days: int = GRACE_DAYS,
        now: datetime.datetime | None = None,
    ) -> SigningCertificate:
        """Issue a new current signing certificate; the previous one enters its grace period."""
        now = now or _utcnow()
        state = self._read_state()
        ca_key, ca = self.ca()
        if now + datetime.timedelta(days=days) > ca.not_valid_after_utc:
            days = max((ca.not_valid_after_utc - now).days, 1)
        key = certs.generate_key(state["algorithm"], rsa_bits=state["rsa_bits"])
        cert = certs.issue_signing_certificate(
            ca_key,
            ca,
            key,
            common_name=f"{state['organization']} module signing {now:%Y-%m-%d %H%M%S}",
            organization=state["organization"],
            validity=certs.Validity.issued(now, days),
        )
        serial = f"{cert.serial_number:x}"
        write_atomic(self._signing / f"{serial}.key.pem", certs.key_pem(key))
        write_atomic(self._signing / f"{serial}.cert.pem", certs.cert_pem(cert))
        grace_until = (now + datetime.timedelta(days=grace_days)).isoformat()
        for entry in state["certs"].values():
            if entry["status"] == "current":
                entry.update(status="retiring", grace_until=grace_until)
        state["certs"][serial] = {"status": "current", "grace_until": None, "revoked_at": None}
        self._write_state(state)
        return self._entry(serial, state["certs"][serial])

    def revoke_signing_certificate(
        self, serial: str, *, now: datetime.datetime | None = None
    ) -> SigningCertificate:
        """Stop trusting a signing certificate at once (never the current one)."""
        state = self._read_state()
        serial = serial.lower().removeprefix("0x")
        entry = state["certs"].get(serial)
        if entry is None:
            raise KeyDirectoryError(
                f"No signing certificate with serial {serial}; 'keys status' lists them."
            )
        if entry["status"] == "current":
            raise KeyDirectoryError(
                "That is the current signing certificate; run 'keys rotate-signing' first, "
                "then revoke it."
            )
        entry.update(status="revoked", revoked_at=(now or _utcnow()).isoformat())
        self._write_state(state)
        return self._entry(serial, entry)

    def _entry(self, serial: str, entry: dict[str, Any]) -> SigningCertificate:
        cert = x509.load_pem_x509_certificate((self._signing / f"{serial}.cert.pem").read_bytes())
        return SigningCertificate(
            serial,
            cert,
            entry["status"],
            _parse_time(entry["grace_until"]),
            _parse_time(entry["revoked_at"]),
        )

    def signing_certificates(self) -> list[SigningCertificate]:
        return [self._entry(s, e) for s, e in self._read_state()["certs"].items()]

    def current_signing(self) -> tuple[certs.SigningKey, x509.Certificate]:
        """The key and certificate that sign modules now."""
        for entry in self.signing_certificates():
            if entry.status == "current":
                pem = (self._signing / f"{entry.serial}.key.pem").read_bytes()
                return certs.load_key(pem), entry.certificate
        raise KeyDirectoryError(f"{self.path} has no current signing certificate.")

    def trusted_certificates(self, now: datetime.datetime | None = None) -> list[x509.Certificate]:
        """Certificates modules may be signed with: current plus those in grace."""
        now = now or _utcnow()
        return [c.certificate for c in self.signing_certificates() if c.trusted_at(now)]

    def bundle_entries(self, now: datetime.datetime | None = None) -> list[BundleEntry]:
        """The trusted certificates as published: each retiring one with its grace end."""
        now = now or _utcnow()
        return [
            BundleEntry(c.certificate, c.grace_until if c.status == "retiring" else None)
            for c in self.signing_certificates()
            if c.trusted_at(now)
        ]

    def revoked_certificates(self) -> list[x509.Certificate]:
        return [c.certificate for c in self.signing_certificates() if c.status == "revoked"]

    # TUF role keys ------------------------------------------------------------

    def tuf_signer(self, role: Role) -> CryptoSigner:
        return _load_signer(self._tuf / f"{role}.pem", role)

    def prepare_rotation(self, role: Role) -> CryptoSigner:
        """The next key of ``role``, created once and reused if a publish must be retried."""
        self._read_state()
        path = self._tuf / f"{role}.next.pem"
        if not path.exists():
            write_atomic(path, _new_tuf_key())
        return _load_signer(path, role)

    def complete_rotation(self, role: Role) -> None:
        """Make the prepared key current and retire the old one."""
        next_path = self._tuf / f"{role}.next.pem"
        if not next_path.exists():
            raise KeyDirectoryError(f"No rotation of the {role} key is in progress.")
        old = self.tuf_signer(role)
        retired = self._tuf / "retired"
        make_private_directory(retired)
        current = self._tuf / f"{role}.pem"
        os.replace(current, retired / f"{role}-{old.public_key.keyid[:16]}.pem")
        os.replace(next_path, current)

    # Expiry -------------------------------------------------------------------

    def expiries(self) -> Iterator[Expiry]:
        _, ca = self.ca()
        yield Expiry("module-signing CA", certs.common_name(ca), ca.not_valid_after_utc)
        for entry in self.signing_certificates():
            if entry.status == "revoked":
                continue
            what = f"signing certificate {entry.serial} ({entry.status})"
            yield Expiry(
                what, certs.common_name(entry.certificate), entry.certificate.not_valid_after_utc
            )
            if entry.status == "retiring" and entry.grace_until is not None:
                yield Expiry(f"grace period of {entry.serial}", "trust ends", entry.grace_until)


def _parse_time(value: str | None) -> datetime.datetime | None:
    return None if value is None else datetime.datetime.fromisoformat(value)


def _new_tuf_key() -> bytes:
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_signer(path: Path, role: str) -> CryptoSigner:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise KeyDirectoryError(
            f"The {role} key is missing from {path.parent}; restore it from backup."
        ) from None
    return CryptoSigner(key)
