"""The patch catalogue: publish, inspect and steer patches, and apply the engine.

Every change to a patch updates its database row and its signed target
metadata together, under the publisher's lock (see `_catalogue_change`):
the metadata is staged, the database transaction commits, and only then is
the metadata signed and published. A failed commit publishes nothing; a
failed publish is taken back in the database. So signed metadata never
names a patch, or a rollout state, that the database lacks.

Promotions and halts are recorded as `RolloutEvent` rows in the same
transaction, ``automatic`` (the engine) or ``manual`` (an administrator):
the ``/metrics`` counters count those rows, so that changes made by
``livepatch-admin``, another process, are counted too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from livepatch.rollout import STAGE_ORDER, RolloutState, Stage
from livepatch.server import engine, reports
from livepatch.server.config import RolloutPolicy
from livepatch.server.errors import Conflict, InvalidRequest, NotFound
from livepatch.server.service import Service
from livepatch.server.storage.models import Patch, RolloutEvent
from livepatch.trust import patchmeta

log = logging.getLogger(__name__)

_KERNEL = re.compile(r"[A-Za-z0-9._+~-]{1,255}")
_CVE = re.compile(r"CVE-[0-9]{4}-[0-9]{4,}")
_MODINFO_NAME = re.compile(rb"(?:^|\x00)name=([A-Za-z0-9_-]{1,55})\x00")
PROMOTION, HALT, REVOCATION = "promotion", "halt", "revocation"
AUTOMATIC, MANUAL = "automatic", "manual"
_ROLLOUT_COLUMNS = (
    "stage",
    "percentage",
    "halted",
    "halt_reason",
    "stage_started",
    "withdrawn",
    "revoked",
    "revoke_reason",
)
"""What a change to a published patch may modify (and an undo restores)."""
_UNPUBLISHED = (
    "{patch_id} is not in the signed metadata (publishing it failed and could not be taken "
    "back): withdraw it and publish the module again."
)
POLICY_KEYS = (
    "canary_percentage",
    "moderate_percentage",
    "canary_soak_hours",
    "moderate_soak_hours",
    "minimum_applied",
)


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


@dataclass(frozen=True)
class Publication:
    """What `livepatch-admin publish` asks for."""

    module: bytes
    kernels: list[str]
    cves: list[str]
    severity: Severity
    description: str
    overrides: dict[str, float]
    """Per-patch policy: keys from POLICY_KEYS."""
    preflight: dict[str, str] | None = None
    """What the pre-flight found (``result``, ``kernel``, ``at``), signed into the target."""


@dataclass(frozen=True)
class PatchInfo:
    patch_id: str
    version: int
    kernels: list[str]
    module_name: str
    target_name: str
    sha256: str
    length: int
    severity: str
    description: str
    cves: list[str]
    state: RolloutState
    halt_reason: str | None
    withdrawn: bool
    stage_started: datetime
    created: datetime
    policy: RolloutPolicy
    revoked: patchmeta.Revocation | None = None
    preflight: dict[str, str] | None = None


@dataclass(frozen=True)
class PatchDetail:
    info: PatchInfo
    aggregates: list[reports.Aggregate]
    decision: engine.Decision


def module_name(module: bytes) -> str:
    """The module's name from its .modinfo (the directory it gets in /sys/kernel/livepatch)."""
    if not module.startswith(b"\x7fELF"):
        raise InvalidRequest("The file is not a kernel module (no ELF header): give a .ko file.")
    found = _MODINFO_NAME.search(module)
    if found is None:
        raise InvalidRequest("The module has no name in its .modinfo: build it with kbuild.")
    return found.group(1).decode()


def effective_policy(server: RolloutPolicy, overrides: dict[str, float]) -> RolloutPolicy:
    """The server's policy with the patch's overrides, validated once as a whole."""
    changes: dict[str, Any] = {}
    for name in ("canary_percentage", "moderate_percentage"):
        if name in overrides:
            changes[name] = float(overrides[name])
    for stage in ("canary", "moderate"):
        if f"{stage}_soak_hours" in overrides:
            changes[f"{stage}_soak"] = timedelta(hours=overrides[f"{stage}_soak_hours"])
    if "minimum_applied" in overrides:
        changes["minimum_applied"] = int(overrides["minimum_applied"])
    return replace(server, **changes)


def custom_fields(patch: Patch) -> dict[str, Any]:
    """The signed ``custom["livepatch"]`` of the patch's target (see docs/CONTRACTS.md)."""
    return {
        "patch_id": patch.patch_id,
        "version": str(patch.version),
        "kernels": list(patch.kernels),
        "module_name": patch.module_name,
        "cumulative": True,
        "severity": patch.severity,
        "description": patch.description,
        "cves": [dict(cve) for cve in patch.cves],
        "rollout": {
            "stage": patch.stage,
            "percentage": patch.percentage,
            "halted": patch.halted,
        },
        **_revocation_fields(patch),
        **({"preflight": dict(patch.preflight)} if patch.preflight else {}),
    }


def _revocation(patch: Patch) -> patchmeta.Revocation | None:
    if patch.revoked is None:
        return None
    return patchmeta.Revocation(patch.revoke_reason or "", patch.revoked)


def _revocation_fields(patch: Patch) -> dict[str, Any]:
    revocation = _revocation(patch)
    return {} if revocation is None else {"revoked": revocation.to_fields()}


def skipped_preflight(kernels: Sequence[str], now: datetime) -> dict[str, str]:
    """The pre-flight record of a patch published without one (``--no-preflight``)."""
    return {
        "result": "skipped",
        "kernel": ",".join(sorted(set(kernels))),
        "at": patchmeta.rfc3339(now),
    }


def publish(service: Service, publication: Publication) -> PatchInfo:
    kernels = sorted(set(publication.kernels))
    if not kernels:
        raise InvalidRequest("Give at least one --kernel KEY the patch applies to.")
    for kernel in kernels:
        if not _KERNEL.fullmatch(kernel):
            raise InvalidRequest(f"{kernel!r} is not a kernel key: use e.g. 6.1.0-56-amd64.")
    cves = sorted(set(publication.cves))
    for cve in cves:
        if not _CVE.fullmatch(cve):
            raise InvalidRequest(f"{cve!r} is not a CVE id: use e.g. CVE-2024-1086.")
    unknown = set(publication.overrides) - set(POLICY_KEYS)
    if unknown:
        raise InvalidRequest(f"Unknown rollout setting {sorted(unknown)[0]!r}.")
    policy = effective_policy(service.config.policy, publication.overrides)
    name = module_name(publication.module)
    now = service.clock()
    publisher = service.publisher
    module = publisher.prepare_module(publication.module, now=now)
    with _catalogue_change(service) as (session, pending):
        _refuse_a_loaded_name(session, name, kernels)
        version = _next_version(session, kernels)
        patch_id = f"lp-{kernels[0]}-{version}"
        patch = Patch(
            patch_id=patch_id,
            kernel_set=",".join(kernels),
            version=version,
            kernels=kernels,
            module_name=name,
            target_name=f"patches/{patch_id}.ko",
            sha256=publisher.sha256(module),
            length=len(module),
            severity=publication.severity.value,
            description=publication.description,
            cves=[
                {
                    "id": c,
                    "severity": publication.severity.value,
                    "description": publication.description,
                }
                for c in cves
            ],
            stage=Stage.CANARY.value,
            percentage=policy.canary_percentage,
            halted=False,
            withdrawn=False,
            stage_started=now,
            created=now,
            policy=dict(publication.overrides),
            preflight=publication.preflight,
        )
        session.add(patch)
        session.flush()
        pending.created.append(patch_id)
        publisher.add_target(patch.target_name, module, custom_fields(patch))
        pending.staged(patch)
    return _info(patch, service.config.policy)


def list_patches(service: Service) -> list[PatchInfo]:
    with service.transaction(readonly=True) as session:
        patches = session.scalars(select(Patch).order_by(Patch.id))
        return [_info(p, service.config.policy) for p in patches]


def show(service: Service, patch_id: str) -> PatchDetail:
    with service.transaction(readonly=True) as session:
        patch = _get(session, patch_id)
        info = _info(patch, service.config.policy)
        outcomes = reports.stage_outcomes(session, patch_id, patch.stage, since=patch.stage_started)
        decision = engine.decide(_rollout(patch, service.config.policy), outcomes, service.clock())
        return PatchDetail(info, reports.aggregates(session, patch_id), decision)


def promote(service: Service, patch_id: str, to: Stage | None = None) -> PatchInfo:
    """Move the patch to `to` (default: the next stage) now, whatever its soak time."""

    def change(patch: Patch, policy: RolloutPolicy, now: datetime) -> str | None:
        if patch.halted:
            raise Conflict(f"{patch_id} is halted: resume it before promoting it.")
        current = Stage(patch.stage)
        target = to or engine.next_stage(current)
        if target is None or STAGE_ORDER.index(target) <= STAGE_ORDER.index(current):
            raise Conflict(
                f"{patch_id} is already at stage {current.value}; it can only move forward."
            )
        _set_stage(patch, target, policy, now)
        return PROMOTION

    return _change(service, patch_id, change)


def halt(service: Service, patch_id: str, reason: str = "halted by an administrator") -> PatchInfo:
    """Stop the rollout; halting a halted patch only replaces the reason (and counts once)."""

    def change(patch: Patch, _policy: RolloutPolicy, _now: datetime) -> str | None:
        already = patch.halted
        patch.halted = True
        patch.halt_reason = reason
        return None if already else HALT

    return _change(service, patch_id, change)


def revoke(service: Service, patch_id: str, reason: str) -> PatchInfo:
    """Fleet-wide rollback: sign ``revoked`` into the patch's metadata.

    Machines that have it loaded leave it (back to the newest admitted,
    non-revoked cumulative patch, or none) and report ``reverted``. The patch
    is halted too, so that clients that predate ``revoked`` stop new loads.
    Atomic like the other transitions; recorded in rollout_events.
    """
    reason = reason.strip()
    if not reason or len(reason) > patchmeta.MAX_REASON or not reason.isprintable():
        raise InvalidRequest(
            f"Give --reason as one line of 1 to {patchmeta.MAX_REASON} printable characters."
        )

    def change(patch: Patch, _policy: RolloutPolicy, now: datetime) -> str | None:
        if patch.revoked is not None:
            raise Conflict(f"{patch_id} was already revoked ({patch.revoke_reason}).")
        patch.revoked = now.replace(microsecond=0)
        patch.revoke_reason = reason
        patch.halted = True
        patch.halt_reason = f"revoked: {reason}"
        return REVOCATION

    return _change(service, patch_id, change)


def resume(service: Service, patch_id: str) -> PatchInfo:
    """Lift a halt; the stage's soak time and failure count start afresh."""

    def change(patch: Patch, _policy: RolloutPolicy, now: datetime) -> str | None:
        if patch.revoked is not None:
            raise Conflict(
                f"{patch_id} was revoked and stays revoked: publish a fixed patch instead."
            )
        if not patch.halted:
            raise Conflict(f"{patch_id} is not halted.")
        patch.halted = False
        patch.halt_reason = None
        patch.stage_started = now
        return None

    return _change(service, patch_id, change)


def withdraw(service: Service, patch_id: str) -> PatchInfo:
    """Remove the patch from the signed targets: no machine will fetch it again."""
    publisher = service.publisher
    with _catalogue_change(service) as (session, pending):
        patch = _get(session, patch_id)
        if patch.withdrawn:
            raise Conflict(f"{patch_id} is already withdrawn.")
        pending.changing(patch)
        patch.withdrawn = True
        if publisher.has_target(patch.target_name):
            publisher.remove_target(patch.target_name)
            pending.staged(patch)
        else:
            # Only after a failed publish whose undo failed too: nothing to unpublish.
            log.warning("%s was not in the signed metadata; marked withdrawn", patch_id)
    return _info(patch, service.config.policy)


def apply_engine(service: Service) -> list[tuple[str, engine.Decision]]:
    """Run the engine over every live patch and apply its promotions and halts."""
    publisher = service.publisher
    applied: list[tuple[str, engine.Decision]] = []
    with _catalogue_change(service) as (session, pending):
        now = service.clock()
        live = session.scalars(
            select(Patch).where(Patch.withdrawn.is_(False), Patch.halted.is_(False))
        ).all()
        for patch in live:
            outcomes = reports.stage_outcomes(
                session, patch.patch_id, patch.stage, since=patch.stage_started
            )
            decision = engine.decide(_rollout(patch, service.config.policy), outcomes, now)
            if decision.action is engine.Action.NOTHING:
                continue
            if not publisher.has_target(patch.target_name):
                log.warning(_UNPUBLISHED.format(patch_id=patch.patch_id))
                continue
            pending.changing(patch)
            if decision.action is engine.Action.HALT:
                patch.halted = True
                patch.halt_reason = decision.reason
                pending.event(session, patch, HALT, AUTOMATIC, now)
            else:
                patch.stage = decision.state.stage.value
                patch.percentage = decision.state.percentage
                patch.stage_started = now
                pending.event(session, patch, PROMOTION, AUTOMATIC, now)
            publisher.update_custom(patch.target_name, custom_fields(patch))
            pending.staged(patch)
            applied.append((patch.patch_id, decision))
    for patch_id, decision in applied:
        if decision.action is engine.Action.HALT:
            log.warning("halted %s: %s", patch_id, decision.reason)
        else:
            stage = decision.state.stage.value
            log.info("promoted %s to %s: %s", patch_id, stage, decision.reason)
    return applied


Change = Callable[[Patch, RolloutPolicy, datetime], str | None]
"""Changes a patch's row; returns the event to record (PROMOTION, HALT) or None."""


def _change(service: Service, patch_id: str, change: Change) -> PatchInfo:
    with _catalogue_change(service) as (session, pending):
        patch = _get(session, patch_id)
        if patch.withdrawn:
            raise Conflict(f"{patch_id} was withdrawn; publish a new patch instead.")
        if not service.publisher.has_target(patch.target_name):
            raise Conflict(_UNPUBLISHED.format(patch_id=patch_id))
        policy = effective_policy(service.config.policy, patch.policy)
        now = service.clock()
        pending.changing(patch)
        action = change(patch, policy, now)
        if action is not None:
            pending.event(session, patch, action, MANUAL, now)
        service.publisher.update_custom(patch.target_name, custom_fields(patch))
        pending.staged(patch)
    return _info(patch, service.config.policy)


@dataclass
class _Pending:
    """A catalogue change committed to the database whose metadata is not yet published."""

    expected: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    """Per staged target: its signed rollout and revocation fields once published
    (None: removed)."""
    created: list[str] = field(default_factory=list)
    """Patches the change inserted."""
    before: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The rollout columns of the patches it changed, as they were."""
    events: list[RolloutEvent] = field(default_factory=list)

    def changing(self, patch: Patch) -> None:
        """Remember the patch's rollout columns before they change."""
        self.before.setdefault(patch.patch_id, {c: getattr(patch, c) for c in _ROLLOUT_COLUMNS})

    def staged(self, patch: Patch) -> None:
        """Note what publishing the patch's staged metadata will sign."""
        fields = custom_fields(patch)
        tracked = {key: fields.get(key) for key in _TRACKED}
        self.expected[patch.target_name] = None if patch.withdrawn else tracked

    def event(
        self, session: Session, patch: Patch, action: str, trigger: str, now: datetime
    ) -> None:
        row = RolloutEvent(
            patch_id=patch.patch_id, action=action, stage=patch.stage, trigger=trigger, at=now
        )
        session.add(row)
        self.events.append(row)

    def undo(self, session: Session) -> None:
        """Put the database back as it was before the change."""
        if self.created:
            session.execute(delete(Patch).where(Patch.patch_id.in_(self.created)))
        for patch_id, values in self.before.items():
            session.execute(update(Patch).where(Patch.patch_id == patch_id).values(**values))
        if self.events:
            ids = [row.id for row in self.events]
            session.execute(delete(RolloutEvent).where(RolloutEvent.id.in_(ids)))

    def published(self, service: Service) -> bool:
        """Whether the published metadata shows the change (reading it afresh)."""
        for name, rollout in self.expected.items():
            fields = service.publisher.published(name)
            if fields is None or rollout is None:
                if (fields is None) != (rollout is None):
                    return False
            elif any(fields.get(key) != rollout.get(key) for key in _TRACKED):
                return False
        return True


_TRACKED = ("rollout", "revoked")
"""The signed fields a catalogue change may alter (compared to see whether it landed)."""


@contextmanager
def _catalogue_change(service: Service) -> Iterator[tuple[Session, _Pending]]:
    """Change patches in the database and their signed metadata, both or neither.

    The body changes rows and stages metadata under the publisher's lock; the
    transaction commits, then the staged metadata is published. If the commit
    fails nothing is published (the next lock drops what was staged). If
    publishing fails before its commit point (replacing timestamp.json), the
    database change is taken back: machines never saw it. If it fails after
    that point, the change is published, and kept.
    """
    publisher = service.publisher
    with publisher.locked():
        pending = _Pending()
        with service.transaction() as session:
            yield session, pending
            session.flush()  # the events' ids, for an undo
        if pending.expected:
            _publish_or_undo(service, pending)


def _publish_or_undo(service: Service, pending: _Pending) -> None:
    names = ", ".join(sorted(pending.expected))
    try:
        service.publisher.publish()
    except BaseException as error:
        landed: bool | None
        try:
            landed = pending.published(service)
        except Exception:
            log.exception(
                "publishing %s failed and the published metadata cannot be read; the database "
                "keeps the change (the next change to the patch publishes its state; withdraw "
                "a patch that was being published)",
                names,
            )
            landed = None
        if landed is None:
            raise
        if landed and isinstance(error, Exception):
            log.warning(
                "publishing %s failed after its commit point; the change is published",
                names,
                exc_info=error,
            )
            return
        if not landed:
            try:
                with service.transaction() as session:
                    pending.undo(session)
            except Exception:
                log.exception(
                    "publishing %s failed and the database change could not be taken back: "
                    "the database shows a change machines do not see (the next change to "
                    "the patch publishes its state; withdraw a patch that was being published)",
                    names,
                )
        raise


def _set_stage(patch: Patch, stage: Stage, policy: RolloutPolicy, now: datetime) -> None:
    patch.stage = stage.value
    patch.percentage = engine.percentage(stage, policy)
    patch.stage_started = now


def _refuse_a_loaded_name(session: Session, name: str, kernels: list[str]) -> None:
    """Refuse a module name a live patch for one of `kernels` already has.

    The kernel loads no second module of a name, and the client takes a
    loaded module of the name for the patch applied; so a patch can only
    replace a patch of another name. Checked under the publisher's lock,
    which serialises publishes.
    """
    wanted = set(kernels)
    rows = session.execute(
        select(Patch.patch_id, Patch.kernels)
        .where(Patch.module_name == name, Patch.withdrawn.is_(False))
        .order_by(Patch.id)
    )
    for patch_id, patch_kernels in rows:
        shared = sorted(wanted.intersection(patch_kernels))
        if shared:
            raise InvalidRequest(
                f"{name} is already the module name of {patch_id} for kernel {shared[0]}; "
                "a cumulative patch needs a new module name so the kernel can load it next "
                "to the one it replaces."
            )


def _next_version(session: Session, kernels: list[str]) -> int:
    """One more than any patch sharing a kernel, so versions grow for every kernel."""
    wanted = set(kernels)
    versions = [
        version
        for version, patch_kernels in session.execute(select(Patch.version, Patch.kernels))
        if wanted.intersection(patch_kernels)
    ]
    return max(versions, default=0) + 1


def _get(session: Session, patch_id: str) -> Patch:
    patch = session.scalars(select(Patch).where(Patch.patch_id == patch_id)).one_or_none()
    if patch is None:
        raise NotFound(f"No patch {patch_id!r}: see `livepatch-admin patches list`.")
    return patch


def _rollout(patch: Patch, server_policy: RolloutPolicy) -> engine.PatchRollout:
    return engine.PatchRollout(
        state=RolloutState(Stage(patch.stage), patch.percentage, patch.halted),
        stage_started=patch.stage_started,
        policy=effective_policy(server_policy, patch.policy),
        withdrawn=patch.withdrawn,
    )


def _info(patch: Patch, server_policy: RolloutPolicy) -> PatchInfo:
    return PatchInfo(
        patch_id=patch.patch_id,
        version=patch.version,
        kernels=list(patch.kernels),
        module_name=patch.module_name,
        target_name=patch.target_name,
        sha256=patch.sha256,
        length=patch.length,
        severity=patch.severity,
        description=patch.description,
        cves=[cve["id"] for cve in patch.cves],
        state=RolloutState(Stage(patch.stage), patch.percentage, patch.halted),
        halt_reason=patch.halt_reason,
        withdrawn=patch.withdrawn,
        stage_started=patch.stage_started,
        created=patch.created,
        policy=effective_policy(server_policy, patch.policy),
        revoked=_revocation(patch),
        preflight=patch.preflight,
    )
