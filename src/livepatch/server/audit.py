"""The audit log: every change an administrator makes, in the change's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from livepatch.server.errors import InvalidRequest
from livepatch.server.storage.models import AuditEntry

MAX_DETAIL = 1024
MAX_PAGE = 1000
MAX_ID = 2**31 - 1


@dataclass(frozen=True)
class Actor:
    """Who is acting and from where."""

    name: str
    source: str


@dataclass(frozen=True)
class Entry:
    id: int
    at: datetime
    actor: str
    source: str
    action: str
    target: str
    detail: str


def record(
    session: Session, actor: Actor, action: str, target: str, *, now: datetime, detail: str = ""
) -> None:
    session.add(
        AuditEntry(
            at=now,
            actor=actor.name[:128],
            source=actor.source[:128],
            action=action[:64],
            target=target[:255],
            detail=detail[:MAX_DETAIL],
        )
    )


@dataclass(frozen=True)
class Page:
    entries: list[Entry]
    next: int | None
    """The id to page on from (``after``); None on the last page."""


def cursor(text: str | None) -> int | None:
    """The entry id in an ``after`` cursor (the ``next`` of a previous page)."""
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_ID:
        raise InvalidRequest(
            f"{text[:64]!r} is not a page cursor: pass the `next` of the previous page."
        )
    return int(text)


def entries(session: Session, *, limit: int = 100, after: int | None = None) -> Page:
    """The newest entries first; `after` pages on from an entry id (to older ones)."""
    limit = max(1, min(limit, MAX_PAGE))
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit + 1)
    if after is not None:
        query = query.where(AuditEntry.id < after)
    found = [
        Entry(e.id, e.at, e.actor, e.source, e.action, e.target, e.detail)
        for e in session.scalars(query)
    ]
    more = len(found) > limit
    return Page(found[:limit], found[limit - 1].id if more else None)
