"""The service's tables, as typed SQLAlchemy 2 ORM models.

Secrets (tokens, machine credentials) are stored only as SHA-256 hex
digests. Times are timezone-aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that always comes back timezone-aware in UTC.

    SQLite has no time zones; storing naive UTC and attaching UTC on the way
    out keeps comparisons correct on both databases.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use UTC-aware ones")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Token(Base):
    """An enrolment token: how many machines of which tier may enrol with it."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))
    """The first characters of the token, so an administrator can tell them apart."""
    tier: Mapped[str] = mapped_column(String(16))
    machine_limit: Mapped[int] = mapped_column(Integer)
    created: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class Machine(Base):
    """An enrolled machine holding one slot of its token.

    ``machine_id`` is what the machine says it is; two records share one when
    a machine enrolled with an id already known without proving it is that
    machine (a cloned image, or an impostor): the later one is a
    ``duplicate``, its reports are refused, and the operator is told.
    """

    __tablename__ = "machines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    machine_id: Mapped[str] = mapped_column(String(128), index=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("tokens.id"), index=True)
    tier: Mapped[str] = mapped_column(String(16))
    hostname: Mapped[str] = mapped_column(String(255))
    kernel: Mapped[str] = mapped_column(String(255))
    architecture: Mapped[str] = mapped_column(String(32))
    credential_digest: Mapped[str] = mapped_column(String(64), unique=True)
    credential_expires: Mapped[datetime] = mapped_column(UTCDateTime)
    enrolled: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    duplicate: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    client_version: Mapped[str | None] = mapped_column(String(64), default=None)
    """What the client said it is at enrolment (absent from older clients)."""


class Patch(Base):
    """A published livepatch module and its rollout state.

    ``stage``, ``percentage`` and ``halted`` are the fields signed into the
    target's metadata; the rest is bookkeeping for the engine and people.
    """

    __tablename__ = "patches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patch_id: Mapped[str] = mapped_column(String(255), unique=True)
    kernel_set: Mapped[str] = mapped_column(String(1024), index=True)
    version: Mapped[int] = mapped_column(Integer)
    kernels: Mapped[list[str]] = mapped_column(JSON)
    module_name: Mapped[str] = mapped_column(String(255))
    target_name: Mapped[str] = mapped_column(String(512))
    sha256: Mapped[str] = mapped_column(String(64))
    length: Mapped[int] = mapped_column(Integer)
    severity: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text)
    cves: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    stage: Mapped[str] = mapped_column(String(16))
    percentage: Mapped[float]
    halted: Mapped[bool]
    halt_reason: Mapped[str | None] = mapped_column(Text, default=None)
    withdrawn: Mapped[bool]
    stage_started: Mapped[datetime] = mapped_column(UTCDateTime)
    created: Mapped[datetime] = mapped_column(UTCDateTime)
    policy: Mapped[dict[str, float]] = mapped_column(JSON)
    """Per-patch overrides of the server's rollout policy (percentages, soak seconds)."""
    revoked: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    revoke_reason: Mapped[str | None] = mapped_column(Text, default=None)
    preflight: Mapped[dict[str, str] | None] = mapped_column(JSON, default=None)
    """The pre-flight record signed into the target (see docs/CONTRACTS.md)."""

    __table_args__ = (UniqueConstraint("kernel_set", "version"),)


class Report(Base):
    """A machine's latest apply outcome for a patch in one stage.

    One row per (machine, patch, stage): a machine retrying a failing load
    every check-in counts once, so the halt rule sees machines, not retries.
    """

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    machine_id: Mapped[str] = mapped_column(String(128))
    patch_id: Mapped[str] = mapped_column(String(255), index=True)
    stage: Mapped[str] = mapped_column(String(16))
    kernel: Mapped[str] = mapped_column(String(255))
    result: Mapped[str] = mapped_column(String(16))
    errno: Mapped[int | None] = mapped_column(Integer, default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    duration_ms: Mapped[int] = mapped_column(Integer)
    taint: Mapped[int] = mapped_column(Integer)
    received: Mapped[datetime] = mapped_column(UTCDateTime)
    health: Mapped[str | None] = mapped_column(String(16), default=None)
    """``healthy``, ``unhealthy`` or None (not judged yet)."""
    evidence: Mapped[str | None] = mapped_column(Text, default=None)
    token_id: Mapped[int | None] = mapped_column(Integer, default=None)
    """The token the machine held when it reported (kept after de-enrolment)."""

    __table_args__ = (UniqueConstraint("machine_id", "patch_id", "stage"),)


class RolloutEvent(Base):
    """A promotion or a halt, by the engine or an administrator.

    The promotion and halt counters of ``/metrics`` count these rows, so that
    changes made by ``livepatch-admin`` (another process) and by any API
    worker are counted alike. A row is written in the transaction of the
    change it records.
    """

    __tablename__ = "rollout_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patch_id: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(16))
    """``promotion`` or ``halt``."""
    stage: Mapped[str] = mapped_column(String(16))
    """The stage reached (promotion) or halted in (halt)."""
    trigger: Mapped[str] = mapped_column(String(16))
    """``automatic`` (the rollout engine) or ``manual`` (an administrator)."""
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class Admin(Base):
    """A person or tool administering the service through the admin API.

    Only the SHA-256 of the API key is kept (the key is 256 random bits,
    shown once at creation).
    """

    __tablename__ = "admins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    """``viewer``, ``operator`` or ``admin``."""
    key_digest: Mapped[str] = mapped_column(String(64), unique=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class AuditEntry(Base):
    """One change made by an administrator: who, what, when, from where."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    """The admin's name, or ``local:USER`` for livepatch-admin on the server host."""
    source: Mapped[str] = mapped_column(String(128))
    """The client address of an API request, or ``cli`` for a local command."""
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255))
    detail: Mapped[str] = mapped_column(Text, default="")


class KernelLifecycle(Base):
    """An operator-set end of life for a kernel key (the kernel-support API)."""

    __tablename__ = "kernel_lifecycle"

    kernel: Mapped[str] = mapped_column(String(255), primary_key=True)
    end_of_life: Mapped[datetime] = mapped_column(UTCDateTime)
