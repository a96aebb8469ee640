"""Enrolment, renewal and de-enrolment of machines, and credential checks.

A token's machine limit must hold when many machines enrol at once: the
token row is locked for the whole enrolment (``SELECT … FOR UPDATE`` on
PostgreSQL; SQLite transactions begin IMMEDIATE, see ``storage.database``),
so the count of its machines cannot change between reading and inserting.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from livepatch.rollout import Tier
from livepatch.server import secrets
from livepatch.server.errors import (
    Forbidden,
    TokenExhausted,
    TokenRevoked,
    Unauthenticated,
    UnknownToken,
)
from livepatch.server.storage.models import Machine, Token
from livepatch.server.tokens import find_token

log = logging.getLogger(__name__)

_USER_AGENT = re.compile(r"livepatch/([A-Za-z0-9.+~-]{1,64})(?:\s|$)")
LAST_SEEN_GRANULARITY = timedelta(minutes=1)
"""A check-in updates ``last_seen`` at most this often, to keep check-ins read-mostly."""
EXPIRED = "The machine credential expired: enrol the machine again with its token."


@dataclass(frozen=True)
class MachineFacts:
    machine_id: str
    hostname: str
    kernel: str
    architecture: str
    client_version: str | None = None


def client_version(user_agent: str | None) -> str | None:
    """The version in a ``livepatch/VERSION`` User-Agent; None for anything else."""
    if user_agent is None:
        return None
    found = _USER_AGENT.match(user_agent)
    return found.group(1) if found else None


@dataclass(frozen=True)
class Credential:
    machine_id: str
    credential: str
    expires: datetime
    tier: Tier
    duplicate: bool = False
    """The id was already enrolled and this machine could not prove it is that one."""


def enrol(
    session: Session,
    token_secret: str,
    facts: MachineFacts,
    *,
    now: datetime,
    lifetime: timedelta,
    proof: str | None = None,
) -> Credential:
    """Give the machine a slot of the token and a fresh credential.

    A machine id is only a claim: ``/etc/machine-id`` is readable by every
    local user and copied into cloned images. Re-enrolling a known id takes
    over its record (slot, tier, credential) only with ``proof``, the
    record's last credential, even expired; the machine keeps it for this.
    Without proof the enrolment makes a new record flagged ``duplicate``:
    the real machine keeps its credential, token and tier, the duplicate's
    reports are refused, and the operator is told (a log line, the
    ``livepatch_duplicate_enrolments_total`` counter, ``machines`` in
    ``patches show``). With another token, a proven machine moves to it (if
    it has room).
    """
    token = find_token(session, token_secret, lock=True)
    if token is None:
        raise UnknownToken()
    if token.revoked is not None:
        raise TokenRevoked()
    known = list(session.scalars(select(Machine).where(Machine.machine_id == facts.machine_id)))
    machine = _proven(known, proof)
    if machine is None or machine.token_id != token.id:
        used = session.scalar(select(func.count()).where(Machine.token_id == token.id)) or 0
        if used >= token.machine_limit:
            raise TokenExhausted(token.machine_limit)
    secret = secrets.new_credential()
    expires = now + lifetime
    if machine is None:
        machine = Machine(machine_id=facts.machine_id, enrolled=now, duplicate=bool(known))
        session.add(machine)
        if known:
            log.warning(
                "machine id %s enrolled again without proof of being the enrolled machine "
                "(a cloned image or an impostor): recorded as a duplicate whose reports "
                "are not counted",
                facts.machine_id,
            )
    machine.token_id = token.id
    machine.tier = token.tier
    machine.hostname = facts.hostname
    machine.kernel = facts.kernel
    machine.architecture = facts.architecture
    machine.client_version = facts.client_version
    machine.credential_digest = secrets.digest(secret)
    machine.credential_expires = expires
    machine.last_seen = now
    session.flush()
    return Credential(facts.machine_id, secret, expires, Tier(token.tier), machine.duplicate)


def _proven(known: list[Machine], proof: str | None) -> Machine | None:
    """The record among `known` whose last credential is `proof` (constant-time compare)."""
    if proof is None:
        return None
    found = None
    for machine in known:
        if secrets.matches(proof, machine.credential_digest):
            found = machine
    return found


def authenticate(
    session: Session, credential: str, *, now: datetime, revoked_ok: bool = False
) -> Machine:
    """The machine holding this unexpired credential, of a token not revoked.

    ``revoked_ok`` lets a machine of a revoked token still de-enrol itself.
    """
    machine = session.scalars(
        select(Machine).where(Machine.credential_digest == secrets.digest(credential))
    ).one_or_none()
    if machine is None or not secrets.matches(credential, machine.credential_digest):
        raise Unauthenticated()
    if machine.credential_expires <= now:
        raise Unauthenticated(EXPIRED)
    if not revoked_ok:
        token = session.get(Token, machine.token_id)
        if token is None or token.revoked is not None:
            raise TokenRevoked()
    return machine


def authenticate_as(
    session: Session, machine_id: str, credential: str, *, now: datetime, revoked_ok: bool = False
) -> Machine:
    """Like `authenticate`, and the credential must belong to `machine_id`."""
    machine = authenticate(session, credential, now=now, revoked_ok=revoked_ok)
    if machine.machine_id != machine_id:
        raise Forbidden("This credential belongs to another machine: use the machine's own.")
    return machine


def may_download(session: Session, credential: str, *, now: datetime) -> Machine:
    """The machine, if it may download modules: enrolled, unexpired, its token not revoked.

    Looked up afresh every time (no cache), so a machine de-enrolled or
    whose token was revoked, by any process, downloads nothing more.
    """
    machine = authenticate(session, credential, now=now)
    token = session.get(Token, machine.token_id)
    if token is None or token.revoked is not None:
        raise TokenRevoked()
    return machine


def renew(
    session: Session,
    machine_id: str,
    credential: str,
    *,
    now: datetime,
    lifetime: timedelta,
    version: str | None = None,
) -> Credential:
    """Replace a still-valid credential with a new one; the old one stops working.

    `version` is the client's version when it said it (an upgraded client).
    """
    machine = authenticate_as(session, machine_id, credential, now=now)
    if version is not None:
        machine.client_version = version
    token = session.get(Token, machine.token_id)
    if token is None or token.revoked is not None:
        raise TokenRevoked()
    secret = secrets.new_credential()
    machine.credential_digest = secrets.digest(secret)
    machine.credential_expires = now + lifetime
    machine.last_seen = now
    return Credential(machine.machine_id, secret, machine.credential_expires, Tier(machine.tier))


def boot_kernel(
    session: Session,
    machine_id: str,
    credential: str,
    facts: KernelChange,
    *,
    now: datetime,
) -> Machine:
    """Record the kernel the machine runs now (it booted another one since it enrolled).

    Reports count only for the kernel on record, and enrolling again needs the
    token, which a machine does not keep. The credential proves the machine
    is the one of the record, so this changes nothing but its own kernel and
    architecture: no new record, slot, tier or credential.
    """
    machine = authenticate_as(session, machine_id, credential, now=now)
    machine.kernel = facts.kernel
    machine.architecture = facts.architecture
    machine.last_seen = now
    return machine


@dataclass(frozen=True)
class KernelChange:
    kernel: str
    architecture: str


def deenrol(session: Session, machine_id: str, credential: str, *, now: datetime) -> None:
    """Forget the machine, freeing its token slot."""
    machine = authenticate_as(session, machine_id, credential, now=now, revoked_ok=True)
    session.delete(machine)


def needs_check_in(machine: Machine, *, now: datetime) -> bool:
    """Whether `last_seen` is stale enough to be worth a write."""
    return now - machine.last_seen >= LAST_SEEN_GRANULARITY


def check_in(session: Session, machine_id: int, *, now: datetime) -> bool:
    """Note that the machine was seen; True when the row changed.

    A conditional UPDATE, so that concurrent check-ins of one machine write once.
    """
    result = session.execute(
        update(Machine)
        .where(Machine.id == machine_id, Machine.last_seen < now - LAST_SEEN_GRANULARITY)
        .values(last_seen=now)
    )
    return bool(getattr(result, "rowcount", 0))
