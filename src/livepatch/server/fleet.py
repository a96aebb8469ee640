"""The fleet as operators see it: each machine's facts, last outcome and states.

`machine_states` is the pure rule naming what is wrong with a machine; the
queries around it gather its inputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from livepatch.kernelsupport import Support, machine_support
from livepatch.server import fleet_query
from livepatch.server.errors import NotFound
from livepatch.server.fleet_query import Cursor
from livepatch.server.storage.models import KernelLifecycle, Machine, Patch, Report

STALE_AFTER = timedelta(days=2)
"""A machine silent for longer is ``stale`` (clients check in every hour or so)."""
DEFAULT_PAGE = 100
MAX_PAGE = 1000
"""The most machines the admin API returns in one page."""


class MachineState(StrEnum):
    APPLY_FAILED = "apply-failed"
    UNHEALTHY = "unhealthy"
    CRASHED = "crashed"
    KERNEL_UPGRADE_REQUIRED = "kernel-upgrade-required"
    STALE = "stale"


def machine_states(
    *,
    last_result: str | None,
    health: str | None,
    support: Support,
    last_seen: datetime,
    now: datetime,
    stale_after: timedelta = STALE_AFTER,
) -> list[MachineState]:
    """What needs an operator's eye, in the order of MachineState."""
    states = []
    if last_result == "failed":
        states.append(MachineState.APPLY_FAILED)
    if health == "unhealthy":
        states.append(MachineState.UNHEALTHY)
    if last_result == "crashed":
        states.append(MachineState.CRASHED)
    if support in (Support.KERNEL_UPGRADE_REQUIRED, Support.KERNEL_END_OF_LIFE):
        states.append(MachineState.KERNEL_UPGRADE_REQUIRED)
    if now - last_seen > stale_after:
        states.append(MachineState.STALE)
    return states


@dataclass(frozen=True)
class Outcome:
    patch_id: str
    stage: str
    result: str
    health: str | None
    reason: str | None
    received: datetime


@dataclass(frozen=True)
class MachineView:
    machine_id: str
    hostname: str
    kernel: str
    architecture: str
    tier: str
    token_id: int
    first_seen: datetime
    last_check_in: datetime
    client_version: str | None
    patch_loaded: str | None
    last_outcome: Outcome | None
    support: Support
    states: list[MachineState]
    duplicate: bool = False
    """Enrolled with an id already known, without proof of being that machine (a clone
    or an impostor): its reports are refused (``machines.enrol``)."""


@dataclass(frozen=True)
class Filters:
    state: MachineState | None = None
    kernel: str | None = None
    patch: str | None = None
    token: int | None = None
    architecture: str | None = None


@dataclass(frozen=True)
class Page:
    machines: list[MachineView]
    next: Cursor | None
    """Where the next page starts; None on the last page."""


def list_machines(
    session: Session,
    filters: Filters,
    *,
    now: datetime,
    limit: int = DEFAULT_PAGE,
    after: Cursor | None = None,
) -> Page:
    """One page of the machines matching `filters`, in ``(machine_id, id)`` order.

    The filters are evaluated by the database (see ``fleet_query``), so a page
    costs one query whatever the fleet's size.
    """
    context = _SupportContext.load(session)
    where = []
    if filters.state is not None:
        where.append(
            fleet_query.state_clause(
                filters.state,
                session,
                now=now,
                stale_after=STALE_AFTER,
                live=context.live_kernels,
            )
        )
    if filters.kernel is not None:
        where.append(Machine.kernel == filters.kernel)
    if filters.patch is not None:
        where.append(fleet_query.patch_clause(filters.patch))
    if filters.token is not None:
        where.append(Machine.token_id == filters.token)
    if filters.architecture is not None:
        where.append(Machine.architecture == filters.architecture)
    if after is not None:
        where.append(fleet_query.after_clause(after))
    machines = list(session.scalars(fleet_query.page_query(where, limit=limit)))
    more = len(machines) > limit
    machines = machines[:limit]
    history = _reports(session, [m.machine_id for m in machines])
    views = [_view(m, history.get(m.machine_id, []), context, now) for m in machines]
    last = machines[-1] if more else None
    return Page(views, Cursor(last.machine_id, last.id) if last is not None else None)


def show_machine(
    session: Session, machine_id: str, *, now: datetime
) -> tuple[MachineView, list[Outcome]]:
    """The machine and its reports, newest first.

    An id enrolled again without proof has several records: the proven one is shown.
    """
    machine = session.scalars(
        select(Machine)
        .where(Machine.machine_id == machine_id)
        .order_by(Machine.duplicate, Machine.id)
        .limit(1)
    ).one_or_none()
    if machine is None:
        raise NotFound(f"No machine {machine_id!r}: see `livepatch-admin machines list`.")
    history = _reports(session, [machine_id]).get(machine_id, [])
    view = _view(machine, history, _SupportContext.load(session), now)
    return view, list(reversed(history))


@dataclass(frozen=True)
class _SupportContext:
    live_kernels: frozenset[str]
    end_of_life: Mapping[str, datetime]

    @classmethod
    def load(cls, session: Session) -> _SupportContext:
        return cls(live_kernels(session), end_of_life(session))


def live_kernels(session: Session) -> frozenset[str]:
    """The kernels of the patches in the signed metadata now."""
    live: set[str] = set()
    for (kernels,) in session.execute(select(Patch.kernels).where(Patch.withdrawn.is_(False))):
        live.update(kernels)
    return frozenset(live)


def end_of_life(session: Session) -> dict[str, datetime]:
    return {row.kernel: row.end_of_life for row in session.scalars(select(KernelLifecycle))}


def _reports(session: Session, machine_ids: Iterable[str]) -> dict[str, list[Outcome]]:
    """Each machine's reports, oldest first."""
    wanted = list(machine_ids)
    found: dict[str, list[Outcome]] = {}
    for start in range(0, len(wanted), 500):
        rows = session.scalars(
            select(Report)
            .where(Report.machine_id.in_(wanted[start : start + 500]))
            .order_by(Report.received, Report.id)
        )
        for row in rows:
            found.setdefault(row.machine_id, []).append(
                Outcome(
                    row.patch_id,
                    row.stage,
                    row.result,
                    row.health,
                    row.reason,
                    row.received,
                )
            )
    return found


def _view(
    machine: Machine, history: list[Outcome], context: _SupportContext, now: datetime
) -> MachineView:
    last = history[-1] if history else None
    applied = [o.patch_id for o in history if o.result == "applied"]
    support = machine_support(
        machine.kernel,
        live=context.live_kernels,
        end_of_life=context.end_of_life,
        now=now,
    )
    return MachineView(
        machine_id=machine.machine_id,
        hostname=machine.hostname,
        kernel=machine.kernel,
        architecture=machine.architecture,
        tier=machine.tier,
        token_id=machine.token_id,
        first_seen=machine.enrolled,
        last_check_in=machine.last_seen,
        client_version=machine.client_version,
        patch_loaded=applied[-1] if applied else None,
        last_outcome=last,
        support=support,
        states=machine_states(
            last_result=last.result if last else None,
            health=last.health if last else None,
            support=support,
            last_seen=machine.last_seen,
            now=now,
        ),
        duplicate=machine.duplicate,
    )
