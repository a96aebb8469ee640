"""Dashboard sessions: an admin API key is exchanged for a signed, short-lived cookie.

The cookie is ``ADMIN_ID.EXPIRES.MAC`` where the MAC (HMAC-SHA256 with a
secret kept 0600 in the data directory, shared by the workers) also covers
the digest of the admin's key: revoking the admin, or replacing the key,
ends its sessions at once. Each action form carries a CSRF token derived
from the cookie, checked in constant time; the cookie itself is HttpOnly,
SameSite=Strict and Secure.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from livepatch.server.admins import AdminInfo, Role
from livepatch.server.storage.models import Admin

COOKIE = "livepatch_session"
LIFETIME = timedelta(hours=12)
SESSION_KEY_FILE = "ui-session.key"
MAX_COOKIE = 256


def load_secret(data_dir: Path) -> bytes:
    """The signing secret, created once (atomically, 0600) by whichever worker comes first."""
    path = data_dir / SESSION_KEY_FILE
    with contextlib.suppress(FileNotFoundError):
        return _read(path)
    data_dir.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=data_dir, prefix=".ui-session.")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(secrets.token_bytes(32).hex().encode())
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)
    return _read(path)


def _read(path: Path) -> bytes:
    secret = bytes.fromhex(path.read_text().strip())
    if len(secret) < 32:
        raise ValueError(f"{path} holds too short a secret: remove it to make a new one")
    return secret


@dataclass(frozen=True)
class Signer:
    secret: bytes

    def _mac(self, message: str) -> str:
        return hmac.new(self.secret, message.encode(), hashlib.sha256).hexdigest()

    def issue(self, admin_id: int, key_digest: str, now: datetime) -> str:
        expires = int((now + LIFETIME).timestamp())
        return f"{admin_id}.{expires}.{self._mac(f'{admin_id}.{expires}.{key_digest}')}"

    def verify(self, session: Session, cookie: str | None, now: datetime) -> AdminInfo | None:
        """The live admin the cookie was issued to; None for anything else."""
        if cookie is None or len(cookie) > MAX_COOKIE:
            return None
        parts = cookie.split(".")
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
            return None
        admin_id, expires, mac = int(parts[0]), int(parts[1]), parts[2]
        if expires <= now.timestamp():
            return None
        admin = session.get(Admin, admin_id)
        if admin is None or admin.revoked is not None:
            return None
        expected = self._mac(f"{admin_id}.{expires}.{admin.key_digest}")
        if not hmac.compare_digest(mac, expected):
            return None
        return AdminInfo(admin.id, admin.name, Role(admin.role), admin.created, admin.revoked)

    def csrf(self, cookie: str) -> str:
        return self._mac(f"csrf.{cookie}")

    def csrf_matches(self, cookie: str, token: str) -> bool:
        return hmac.compare_digest(self.csrf(cookie), token)
