"""The signed module-signing certificate bundle: PEM certificates, each with its grace time.

The bundle is the TUF target ``keys/module-signing.pem``. A certificate that a
rotation retired is preceded by one line of explanatory text naming the end
of its grace period (RFC 7468 lets text sit between PEM blocks, and PEM
readers skip it, so clients that predate the line still read the bundle)::

    Grace-Until: 2026-07-01T12:00:00+00:00
    -----BEGIN CERTIFICATE-----
    ...
    -----END CERTIFICATE-----

A certificate without the line is trusted until it expires (module
verification checks its validity period). ``trusted_certificates`` drops the
retired ones whose grace ended, by the caller's clock: a grace period ends on
time on every machine even if the bundle is never published again.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509

from livepatch.trust import certs

GRACE_FIELD = "Grace-Until"

_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.*?-----END CERTIFICATE-----", re.DOTALL)


class InvalidCertificateBundle(ValueError):
    """The bundle cannot be read; the message says what is wrong with it."""


@dataclass(frozen=True)
class BundleEntry:
    """One certificate of the bundle and, if a rotation retired it, when its trust ends."""

    certificate: x509.Certificate
    grace_until: datetime.datetime | None = None

    def trusted_at(self, now: datetime.datetime) -> bool:
        return self.grace_until is None or now <= self.grace_until


def encode(entries: Iterable[BundleEntry]) -> bytes:
    """The bundle bytes: each certificate's PEM, after its ``Grace-Until`` line if it has one."""
    parts = []
    for entry in entries:
        if entry.grace_until is not None:
            if entry.grace_until.tzinfo is None:
                raise ValueError("a grace period must end at a timezone-aware time")
            until = entry.grace_until.astimezone(datetime.UTC).isoformat()
            parts.append(f"{GRACE_FIELD}: {until}\n".encode())
        parts.append(certs.cert_pem(entry.certificate))
    return b"".join(parts)


def _grace(text: bytes, position: int) -> datetime.datetime | None:
    """The grace time named in the text before a certificate (None if it names none)."""
    values = []
    for raw in text.decode("utf-8", "replace").splitlines():
        field, separator, value = raw.strip().partition(":")
        if separator and field.strip().lower() == GRACE_FIELD.lower():
            values.append(value.strip())
    if not values:
        return None
    if len(values) > 1:
        raise InvalidCertificateBundle(f"certificate {position} has more than one {GRACE_FIELD}")
    try:
        until = datetime.datetime.fromisoformat(values[0])
    except ValueError:
        until = None
    if until is None or until.tzinfo is None:
        raise InvalidCertificateBundle(
            f"certificate {position} has {GRACE_FIELD} {values[0]!r}, not a time with a UTC offset"
        )
    return until


def decode(bundle: bytes) -> list[BundleEntry]:
    """The entries of a bundle, in order; raises InvalidCertificateBundle."""
    entries = []
    end = 0
    for position, block in enumerate(_BLOCK.finditer(bundle), start=1):
        grace_until = _grace(bundle[end : block.start()], position)
        try:
            certificate = x509.load_pem_x509_certificate(block.group())
        except ValueError as error:
            raise InvalidCertificateBundle(f"certificate {position} is not readable") from error
        entries.append(BundleEntry(certificate, grace_until))
        end = block.end()
    if not entries:
        raise InvalidCertificateBundle("it holds no certificate")
    if _grace(bundle[end:], len(entries) + 1) is not None:
        raise InvalidCertificateBundle(f"it ends with a {GRACE_FIELD} that no certificate follows")
    return entries


def trusted_certificates(
    entries: Iterable[BundleEntry], now: datetime.datetime
) -> list[x509.Certificate]:
    """The certificates of ``entries`` still trusted at ``now``: retired ones leave at grace end."""
    if now.tzinfo is None:
        raise ValueError("the reference time must be timezone-aware")
    return [entry.certificate for entry in entries if entry.trusted_at(now)]
