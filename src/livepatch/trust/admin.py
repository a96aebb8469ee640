"""What the key commands of ``livepatch-admin`` do, kept out of the CLI module.

Each function takes plain values, does one job, and returns what the CLI
prints; errors are ``TrustError``s with one sentence.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from livepatch.trust import modsig
from livepatch.trust.certs import common_name
from livepatch.trust.errors import KeyDirectoryError, TrustError
from livepatch.trust.files import write_atomic
from livepatch.trust.keys import KeyDirectory, Role

WARN_DAYS = 30


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def sign_file(module: Path, keys: KeyDirectory, output: Path | None = None) -> modsig.Signer:
    """Sign ``module`` in place (or into ``output``) with the current signing certificate."""
    key, cert = keys.current_signing()
    data = _read(module)
    write_atomic(output or module, modsig.sign_module(data, key, cert), mode=0o644)
    return modsig.Signer(common_name(cert), cert)


def verify_file(
    module: Path,
    *,
    keys: KeyDirectory | None = None,
    cert_files: Sequence[Path] = (),
    now: datetime.datetime | None = None,
) -> modsig.Signer:
    """Verify ``module`` against the key directory's trusted certificates or PEM files."""
    now = now or now_utc()
    trusted: list[x509.Certificate] = []
    revoked: list[x509.Certificate] = []
    for path in cert_files:
        try:
            trusted += x509.load_pem_x509_certificates(_read(path))
        except ValueError as error:
            raise TrustError(f"{path} holds no readable PEM certificate.") from error
    if keys is not None:
        trusted += [c.certificate for c in keys.signing_certificates() if c.trusted_at(now)]
        revoked = keys.revoked_certificates()
        trusted += revoked  # so that a revoked signer is named as revoked, not unknown
    _read(module)
    return modsig.verify_module_file(module, trusted, now=now, revoked=revoked)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise TrustError(f"Cannot read {path}: {error.strerror}.") from error


@dataclass(frozen=True)
class StatusLine:
    what: str
    subject: str
    not_after: datetime.datetime
    days_left: float
    warn_days: float = WARN_DAYS

    @property
    def warning(self) -> str | None:
        if self.days_left < 0:
            return f"{self.what} expired on {self.not_after:%Y-%m-%d}."
        if self.days_left < self.warn_days:
            return f"{self.what} expires in {int(self.days_left)} days ({self.not_after:%Y-%m-%d})."
        return None

    def document(self) -> dict[str, str | float | None]:
        """The line as `keys status --format json` and the admin API show it."""
        return {
            "what": self.what,
            "subject": self.subject,
            "not_after": self.not_after.isoformat(),
            "days_left": round(self.days_left, 1),
            "warning": self.warning,
        }


def status(
    keys: KeyDirectory, metadata_dir: Path | None, now: datetime.datetime | None = None
) -> list[StatusLine]:
    """Everything that expires, soonest first: certificates, grace periods, metadata."""
    now = now or now_utc()
    lines = [StatusLine(e.what, e.subject, e.not_after, e.days_left(now)) for e in keys.expiries()]
    if metadata_dir is not None and (metadata_dir / "timestamp.json").exists():
        from livepatch.trust.repository import MetadataRepository

        repo = MetadataRepository(metadata_dir, metadata_dir.parent / "targets", keys)
        for role, expires in repo.expiries().items():
            days = (expires - now).total_seconds() / 86400
            # The server re-signs timestamp and snapshot on its own; only say so if it stopped.
            warn_days = 0 if role in ("timestamp", "snapshot") else WARN_DAYS
            lines.append(StatusLine(f"TUF {role} metadata", "", expires, days, warn_days))
    return sorted(lines, key=lambda line: line.not_after)


def republish_certificates(keys: KeyDirectory, metadata_dir: Path, targets_dir: Path) -> bool:
    """Publish the trusted certificate bundle if a repository exists; True if it did.

    Each retiring certificate carries the end of its grace period, which
    clients enforce by their own clock.
    """
    if not (metadata_dir / "timestamp.json").exists():
        return False
    from livepatch.trust.repository import MetadataRepository

    repo = MetadataRepository(metadata_dir, targets_dir, keys)
    repo.set_signing_certificates(keys.bundle_entries())
    repo.publish()
    return True


def rotate_tuf_key(keys: KeyDirectory, role: Role, metadata_dir: Path, targets_dir: Path) -> int:
    """Rotate a TUF role key through the repository; returns the new root version."""
    if not (metadata_dir / "timestamp.json").exists():
        raise KeyDirectoryError(
            f"No published metadata in {metadata_dir}; TUF keys are rotated through the "
            "repository, so start the server once or pass --metadata-dir."
        )
    from livepatch.trust.repository import MetadataRepository

    repo = MetadataRepository(metadata_dir, targets_dir, keys)
    repo.rotate_key(role)
    version: int = repo.root.signed.version
    return version
