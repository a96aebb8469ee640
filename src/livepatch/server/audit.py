"""The audit log: every change an administrator makes, in the change's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from livepatch.server.storage.models import AuditEntry

MAX_DETAIL = 1024
MAX_PAGE = 1000


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


def entries(session: Session, *, limit: int = 100, before: int | None = None) -> list[Entry]:
    """The newest entries first; `before` pages on from an entry id."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(min(limit, MAX_PAGE))
    if before is not None:
        query = query.where(AuditEntry.id < before)
    return [
        Entry(e.id, e.at, e.actor, e.source, e.action, e.target, e.detail)
        for e in session.scalars(query)
    ]
