"""Dashboard sessions: signed cookies bound to the admin's key, CSRF tokens, the secret file."""

from __future__ import annotations

import hashlib
import hmac
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from livepatch.server.storage.database import Database
from livepatch.server.storage.models import Admin
from livepatch.server.ui.sessions import LIFETIME, Signer, load_secret

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
SECRET = bytes(range(32))


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    database = Database(f"sqlite:///{tmp_path}/db.sqlite")
    database.migrate()
    with database.transaction() as session:
        session.add(Admin(name="alice", role="operator", key_digest="a" * 64, created=NOW))
        session.flush()
        yield session
    database.dispose()


def test_a_cookie_is_id_expiry_and_an_hmac_over_the_key_digest() -> None:
    cookie = Signer(SECRET).issue(1, "a" * 64, NOW)
    expires = int((NOW + LIFETIME).timestamp())
    mac = hmac.new(SECRET, f"1.{expires}.{'a' * 64}".encode(), hashlib.sha256).hexdigest()
    assert cookie == f"1.{expires}.{mac}"


def test_a_cookie_names_its_admin_until_it_expires(session: Session) -> None:
    signer = Signer(SECRET)
    cookie = signer.issue(1, "a" * 64, NOW)
    admin = signer.verify(session, cookie, NOW + timedelta(hours=1))
    assert admin is not None and admin.name == "alice"
    assert signer.verify(session, cookie, NOW + LIFETIME) is None


@pytest.mark.parametrize(
    "cookie",
    [None, "", "1.2", "x.1.2", "1.99999999999.00", "2." + "9" * 11 + ".00", "1." * 200],
)
def test_anything_else_is_no_session(session: Session, cookie: str | None) -> None:
    assert Signer(SECRET).verify(session, cookie, NOW) is None


def test_a_new_key_or_a_revocation_ends_sessions(session: Session) -> None:
    signer = Signer(SECRET)
    cookie = signer.issue(1, "a" * 64, NOW)
    assert Signer(bytes(32)).verify(session, cookie, NOW) is None
    admin = session.get(Admin, 1)
    assert admin is not None
    admin.key_digest = "b" * 64
    assert signer.verify(session, cookie, NOW) is None
    admin.key_digest = "a" * 64
    admin.revoked = NOW
    assert signer.verify(session, cookie, NOW) is None


def test_csrf_tokens_belong_to_one_session() -> None:
    signer = Signer(SECRET)
    first, second = signer.issue(1, "a" * 64, NOW), signer.issue(1, "a" * 64, NOW + LIFETIME)
    assert signer.csrf_matches(first, signer.csrf(first))
    assert not signer.csrf_matches(first, signer.csrf(second))
    assert not signer.csrf_matches(first, "")


def test_the_secret_is_made_once_and_kept_private(tmp_path: Path) -> None:
    secret = load_secret(tmp_path)
    assert len(secret) == 32 and load_secret(tmp_path) == secret
    path = tmp_path / "ui-session.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["ui-session.key"]
