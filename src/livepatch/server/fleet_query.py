"""The machines a fleet listing returns, in SQL: the filters and a keyset cursor.

Every filter is a WHERE clause, so a page costs one query however large the
fleet and however rare the state asked for. The states (``fleet.machine_states``)
and how each is expressed:

- ``apply-failed``, ``crashed``, ``unhealthy``: the machine's newest report
  (by ``received``, then ``id``, the order ``fleet`` reads history in), as a
  correlated subquery on its result or health.
- ``stale``: ``last_seen`` older than ``now - STALE_AFTER``.
- ``kernel-upgrade-required``: the operator-set end of life is SQL (a subquery
  on ``kernel_lifecycle``), but "a newer kernel of the same series and flavour
  has a patch" cannot be: it compares kernel releases numerically
  (``6.1.0-9`` < ``6.1.0-10``), a parse of the ``uname -r`` string that neither
  SQLite nor PostgreSQL does portably. That rule
  (``kernelsupport.published_support``) runs in Python once per distinct
  kernel of the fleet, and the kernels it names go into the query as
  ``kernel IN (…)``. They are rendered as literals (no bind-parameter limit);
  each matched the kernel-release pattern, so holds only ``[a-z0-9.-]``.

The order is ``(machine_id, id)``: ``machine_id`` is what operators search by,
and ``id`` tells apart the records of a machine id enrolled twice. A cursor
names the last machine of a page, so a machine enrolled or removed between
two pages neither shifts nor repeats the others.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    ScalarSelect,
    Select,
    and_,
    bindparam,
    false,
    or_,
    select,
)
from sqlalchemy.orm import Session

from livepatch.kernelsupport import Support, published_support
from livepatch.server.errors import InvalidRequest
from livepatch.server.storage.models import KernelLifecycle, Machine, Report

_CURSOR = re.compile(r"([0-9]{1,10}):([A-Za-z0-9][A-Za-z0-9._:-]{0,127})")
CURSOR_PATTERN = f"^{_CURSOR.pattern}$"
"""What the API accepts as ``after`` for machines (the ``next`` of a previous page)."""
_MAX_ROW_ID = 2**31 - 1


@dataclass(frozen=True)
class Cursor:
    """The last machine of a page: its ``machine_id`` and record id."""

    machine_id: str
    row: int

    def encode(self) -> str:
        return f"{self.row}:{self.machine_id}"

    @classmethod
    def decode(cls, text: str) -> Cursor:
        found = _CURSOR.fullmatch(text)
        if found is None or int(found.group(1)) > _MAX_ROW_ID:
            raise InvalidRequest(
                f"{text[:64]!r} is not a page cursor: pass the `next` of the previous page."
            )
        return cls(found.group(2), int(found.group(1)))


def _newest_report(column: Any, *conditions: ColumnElement[bool]) -> ScalarSelect[Any]:
    """A column of the machine's newest report (among those matching `conditions`)."""
    return (
        select(column)
        .where(Report.machine_id == Machine.machine_id, *conditions)
        .order_by(Report.received.desc(), Report.id.desc())
        .limit(1)
        .correlate(Machine)
        .scalar_subquery()
    )


def last_result() -> ScalarSelect[Any]:
    return _newest_report(Report.result)


def last_health() -> ScalarSelect[Any]:
    return _newest_report(Report.health)


def patch_loaded() -> ScalarSelect[Any]:
    """The patch of the newest ``applied`` report: what ``fleet`` calls the patch loaded."""
    return _newest_report(Report.patch_id, Report.result == "applied")


def upgrade_required_kernels(session: Session, live: Iterable[str]) -> list[str]:
    """The fleet's kernels for which a newer kernel of their series and flavour has a patch.

    `live`: the kernels of the patches published now (``fleet.live_kernels``).
    """
    running = session.scalars(select(Machine.kernel).distinct())
    return sorted(
        k for k in running if published_support(k, live) is Support.KERNEL_UPGRADE_REQUIRED
    )


def state_clause(
    state: str,
    session: Session,
    *,
    now: datetime,
    stale_after: timedelta,
    live: Iterable[str],
) -> ColumnElement[bool]:
    """Machines in `state` (a ``fleet.MachineState`` value), as of `now`; `live` as above."""
    if state == "apply-failed":
        return last_result() == "failed"
    if state == "crashed":
        return last_result() == "crashed"
    if state == "unhealthy":
        return last_health() == "unhealthy"
    if state == "stale":
        return Machine.last_seen < now - stale_after
    if state == "kernel-upgrade-required":
        ended = select(KernelLifecycle.kernel).where(KernelLifecycle.end_of_life <= now)
        upgrade = upgrade_required_kernels(session, live)
        kernels: BindParameter[list[str]] = bindparam(
            "upgrade_kernels", upgrade, expanding=True, literal_execute=True
        )
        older = Machine.kernel.in_(kernels) if upgrade else false()
        return or_(Machine.kernel.in_(ended), older)
    raise AssertionError(f"no machine state {state!r}")


def patch_clause(patch: str) -> ColumnElement[bool]:
    """Machines whose patch loaded, or whose newest report, is `patch`.

    Two lookups per machine on the reports' ``(machine_id, …)`` index; a
    ``machine_id IN (reports of the patch)`` pre-filter looks cheaper but makes
    PostgreSQL re-scan those reports for every machine once a cursor is given.
    """
    return or_(patch_loaded() == patch, _newest_report(Report.patch_id) == patch)


def after_clause(cursor: Cursor) -> ColumnElement[bool]:
    """Machines after `cursor`; the leading ``>=`` lets the index on machine_id find the start."""
    return and_(
        Machine.machine_id >= cursor.machine_id,
        or_(Machine.machine_id > cursor.machine_id, Machine.id > cursor.row),
    )


def page_query(where: list[ColumnElement[bool]], *, limit: int) -> Select[Machine]:
    """One more than `limit` machines in listing order: the extra one says a next page exists."""
    return select(Machine).where(*where).order_by(Machine.machine_id, Machine.id).limit(limit + 1)
