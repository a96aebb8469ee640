"""Secrets handed out by the service: enrolment tokens and machine credentials.

Both are high-entropy random strings, so a single SHA-256 is enough to store
them (no salt or slow hash needed: there is nothing to brute-force). Lookups
go by digest; the final comparison is constant-time all the same.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_token() -> str:
    """A 128-bit enrolment token, 32 hex characters like Canonical's."""
    return secrets.token_hex(16)


def new_credential() -> str:
    """A 256-bit machine credential."""
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def matches(secret: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(secret), stored_digest)
