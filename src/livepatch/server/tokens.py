"""Enrolment tokens: create (shown once), list, revoke, look up."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from livepatch.rollout import Tier
from livepatch.server import secrets
from livepatch.server.errors import InvalidRequest, NotFound
from livepatch.server.storage.models import Machine, Token

DEFAULT_MACHINES = {Tier.COMMUNITY: 3}
MAX_MACHINES = 1_000_000
HINT_LENGTH = 6


@dataclass(frozen=True)
class TokenInfo:
    id: int
    hint: str
    tier: Tier
    machine_limit: int
    machines: int
    created: datetime
    revoked: datetime | None


@dataclass(frozen=True)
class NewToken:
    """A freshly created token: the only time its secret is known."""

    secret: str
    info: TokenInfo


def create_token(session: Session, *, tier: Tier, machines: int | None, now: datetime) -> NewToken:
    if machines is None:
        if tier not in DEFAULT_MACHINES:
            raise InvalidRequest(f"{tier.value.capitalize()} tokens need --machines N.")
        machines = DEFAULT_MACHINES[tier]
    if not 1 <= machines <= MAX_MACHINES:
        raise InvalidRequest(f"A token allows 1 to {MAX_MACHINES} machines, not {machines}.")
    secret = secrets.new_token()
    token = Token(
        digest=secrets.digest(secret),
        hint=secret[:HINT_LENGTH],
        tier=tier.value,
        machine_limit=machines,
        created=now,
    )
    session.add(token)
    session.flush()
    return NewToken(secret=secret, info=_info(token, 0))


def list_tokens(session: Session) -> list[TokenInfo]:
    counts = select(Machine.token_id, func.count().label("n")).group_by(Machine.token_id).subquery()
    rows = session.execute(
        select(Token, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.token_id == Token.id)
        .order_by(Token.id)
    )
    return [_info(token, int(n)) for token, n in rows]


def revoke_token(session: Session, reference: str, *, now: datetime) -> TokenInfo:
    """Revoke by id or hint: no enrolments, renewals, check-ins or reports with it from now on."""
    token = _resolve(session, reference)
    if token.revoked is None:
        token.revoked = now
    used = session.scalar(select(func.count()).where(Machine.token_id == token.id)) or 0
    return _info(token, used)


def find_token(session: Session, secret: str, *, lock: bool = False) -> Token | None:
    """The token with this secret, row-locked on PostgreSQL when `lock` is set."""
    query = select(Token).where(Token.digest == secrets.digest(secret))
    if lock:
        query = query.with_for_update()
    token = session.scalars(query).one_or_none()
    if token is None or not secrets.matches(secret, token.digest):
        return None
    return token


def _resolve(session: Session, reference: str) -> Token:
    if reference.isdigit():
        token = session.get(Token, int(reference))
        if token is not None:
            return token
    found = list(session.scalars(select(Token).where(Token.hint == reference)))
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise InvalidRequest(f"Several tokens start with {reference!r}: give the token id.")
    raise NotFound(f"No token {reference!r}: see `livepatch-admin tokens list` for ids.")


def _info(token: Token, machines: int) -> TokenInfo:
    return TokenInfo(
        id=token.id,
        hint=token.hint,
        tier=Tier(token.tier),
        machine_limit=token.machine_limit,
        machines=machines,
        created=token.created,
        revoked=token.revoked,
    )
