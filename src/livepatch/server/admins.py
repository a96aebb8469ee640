"""Administrators of the service: API keys with a role, and what each role may do.

A key is 256 random bits with a recognisable prefix, shown once; only its
SHA-256 is stored (nothing to brute-force, so no slow hash), looked up by
digest and compared in constant time.
"""

from __future__ import annotations

import re
import secrets as random
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from livepatch.server import secrets
from livepatch.server.errors import Conflict, Forbidden, InvalidRequest, NotFound, Unauthenticated
from livepatch.server.storage.models import Admin

KEY_PREFIX = "lpadm_"
_NAME = re.compile(r"[a-z][a-z0-9._-]{0,63}")
_KEY = re.compile(r"lpadm_[A-Za-z0-9_-]{43}")


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


def allows(role: Role, needed: Role) -> bool:
    """Whether `role` may do what needs `needed`: viewer < operator < admin."""
    return _RANK[role] >= _RANK[needed]


@dataclass(frozen=True)
class AdminInfo:
    id: int
    name: str
    role: Role
    created: datetime
    revoked: datetime | None


@dataclass(frozen=True)
class NewAdmin:
    """A freshly created administrator: the only time the key is known."""

    key: str
    info: AdminInfo


def new_key() -> str:
    return KEY_PREFIX + random.token_urlsafe(32)


def looks_like_key(text: str) -> bool:
    return _KEY.fullmatch(text) is not None


def create(session: Session, name: str, role: Role, *, now: datetime) -> NewAdmin:
    if not _NAME.fullmatch(name):
        raise InvalidRequest(
            f"{name!r} is not an admin name: use lower-case letters, digits, '.', '_' or '-'."
        )
    if session.scalars(select(Admin).where(Admin.name == name)).one_or_none() is not None:
        raise Conflict(f"There is already an admin {name!r}: pick another name.")
    key = new_key()
    admin = Admin(name=name, role=role.value, key_digest=secrets.digest(key), created=now)
    session.add(admin)
    session.flush()
    return NewAdmin(key, _info(admin))


def list_admins(session: Session) -> list[AdminInfo]:
    return [_info(a) for a in session.scalars(select(Admin).order_by(Admin.id))]


def revoke(session: Session, name: str, *, now: datetime) -> AdminInfo:
    admin = session.scalars(select(Admin).where(Admin.name == name)).one_or_none()
    if admin is None:
        raise NotFound(f"No admin {name!r}: see `livepatch-admin admins list`.")
    if admin.revoked is None:
        admin.revoked = now
    return _info(admin)


def authenticate(session: Session, key: str) -> AdminInfo:
    """The live administrator holding this key."""
    admin = None
    if looks_like_key(key):
        admin = session.scalars(
            select(Admin).where(Admin.key_digest == secrets.digest(key))
        ).one_or_none()
    if admin is None or not secrets.matches(key, admin.key_digest) or admin.revoked is not None:
        raise Unauthenticated(
            "The admin API key is missing, unknown or revoked: create one with "
            "`livepatch-admin admins create NAME --role ROLE` on the server."
        )
    return _info(admin)


def require(admin: AdminInfo, needed: Role) -> None:
    if not allows(admin.role, needed):
        raise Forbidden(
            f"This needs the {needed.value} role; {admin.name} is a {admin.role.value}."
        )


def _info(admin: Admin) -> AdminInfo:
    return AdminInfo(admin.id, admin.name, Role(admin.role), admin.created, admin.revoked)
