"""Pure state changes: each takes the state and facts, returns the next state.

The daemon and the command line persist the results; nothing here does I/O,
so every path through a check-in (including a crash between any two steps,
see ``reconcile``) is testable with plain values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from livepatch.client.patches import PatchInfo
from livepatch.client.planner import (
    Apply,
    KernelUpgradeRequired,
    NothingToApply,
    Plan,
    Remove,
    Revert,
    UpToDate,
)
from livepatch.client.state import (
    CheckState,
    Crash,
    Enrolment,
    ErrorRecord,
    Fix,
    Health,
    HealthWatch,
    PatchRecord,
    PatchState,
    Report,
    Revoked,
    State,
    Support,
)


@dataclass(frozen=True)
class ModuleStatus:
    """What the kernel says about one loaded livepatch module."""

    enabled: bool
    transition: bool


def record(patch: PatchInfo, kernel: str) -> PatchRecord:
    fixes = tuple(Fix(cve.id.lower(), cve.severity, cve.description) for cve in patch.cves)
    return PatchRecord(patch.patch_id, patch.version, patch.module_name, kernel, fixes)


def enrolled(state: State, enrolment: Enrolment) -> State:
    return replace(
        state, enrolment=enrolment, check_state=CheckState.NEEDS_CHECK, failures=0, errors=()
    )


def disenrolled(state: State, *, unloaded: bool) -> State:
    """Forget the enrolment; what is loaded stays recorded unless it was unloaded."""
    if unloaded:
        return State(kernel=state.kernel)
    return replace(
        state,
        enrolment=None,
        check_state=CheckState.NEEDS_CHECK,
        next_check=None,
        failures=0,
        errors=(),
        pending_reports=(),
    )


def reconcile(state: State, kernel_key: str, loaded: Mapping[str, ModuleStatus]) -> State:
    """Align the record with what the kernel really has loaded.

    Runs at start-up and before each check: after a reboot into another
    kernel nothing of ours is loaded and the old kernel's facts no longer
    apply; after a crash mid-apply the kernel tells whether the load happened.
    """
    if state.kernel != kernel_key:
        return replace(
            state,
            kernel=kernel_key,
            supported=Support.UNKNOWN,
            check_state=CheckState.NEEDS_CHECK,
            patch_state=PatchState.UNAPPLIED,
            applied=None,
            applying=None,
            available=None,
            errors=(),
        )
    applied, applying = state.applied, state.applying
    reports = state.pending_reports
    patch_state = state.patch_state
    if applying is not None:
        status = loaded.get(applying.module_name)
        if status is not None and status.enabled and not status.transition:
            applied, applying = applying, None
            reports = (*reports, Report(applied.patch_id, kernel_key, "applied"))
        elif status is None or not status.enabled:
            applying = None
    if applied is not None and not _live(loaded.get(applied.module_name)):
        applied = None
    if applying is not None:
        patch_state = PatchState.APPLYING
    elif applied is not None and patch_state in (PatchState.APPLYING, PatchState.UNAPPLIED):
        patch_state = PatchState.APPLIED
    elif applied is None and patch_state in (PatchState.APPLIED, PatchState.APPLYING):
        patch_state = PatchState.UNAPPLIED
    return replace(
        state, applied=applied, applying=applying, patch_state=patch_state, pending_reports=reports
    )


def _live(status: ModuleStatus | None) -> bool:
    return status is not None and status.enabled


def planned(state: State, plan: Plan, kernel_key: str, now: datetime) -> State:
    """Record a successful check's decision (before any apply starts).

    While a patch is still in transition (``applying``) the state stays
    ``applying`` whatever the decision: the kernel has not finished it.
    """
    decided = _decided(state, plan, kernel_key, now)
    if state.applying is not None:
        return replace(decided, patch_state=PatchState.APPLYING)
    return decided


def _decided(state: State, plan: Plan, kernel_key: str, now: datetime) -> State:
    base = replace(
        state,
        kernel=kernel_key,
        check_state=CheckState.CHECKED,
        last_check=now,
        failures=0,
        errors=(),
    )
    match plan:
        case KernelUpgradeRequired(support):
            return replace(
                base,
                supported=support,
                available=None,
                patch_state=PatchState.APPLIED
                if state.applied
                else PatchState.KERNEL_UPGRADE_REQUIRED,
            )
        case NothingToApply():
            return replace(
                base,
                supported=Support.SUPPORTED,
                available=None,
                patch_state=PatchState.APPLIED if state.applied else PatchState.NOTHING_TO_APPLY,
            )
        case UpToDate(patch):
            return replace(
                base,
                supported=Support.SUPPORTED,
                available=record(patch, kernel_key),
                patch_state=PatchState.APPLIED,
            )
        case Apply(patch):
            return replace(
                base,
                supported=Support.SUPPORTED,
                available=record(patch, kernel_key),
                patch_state=PatchState.UNAPPLIED,
            )
        case Revert(patch):
            return replace(
                base,
                supported=Support.SUPPORTED,
                available=record(patch, kernel_key),
                patch_state=PatchState.APPLIED,
            )
        case Remove():
            return replace(
                base, supported=Support.SUPPORTED, available=None, patch_state=PatchState.APPLIED
            )


def applying(state: State, patch: PatchRecord) -> State:
    """About to hand `patch` to the kernel: persisted first, so a crash is recoverable."""
    return replace(state, applying=patch, patch_state=PatchState.APPLYING)


def apply_succeeded(state: State, patch: PatchRecord, report: Report) -> State:
    return replace(
        state,
        applied=patch,
        applying=None,
        patch_state=PatchState.APPLIED,
        errors=(),
        pending_reports=(*state.pending_reports, report),
    )


def apply_failed(
    state: State,
    error: ErrorRecord,
    report: Report | None,
    *,
    still_applying: PatchRecord | None = None,
) -> State:
    """The kernel or our checks refused the patch; the previous patch, if any, stays.

    `still_applying` is a patch the kernel may still hold in transition: the
    one that stalled, or one left in transition by an earlier check. The
    caller reconciles the result with the kernel, which keeps it as
    ``applying`` while the kernel has it in transition and drops it otherwise.
    """
    reports = state.pending_reports if report is None else (*state.pending_reports, report)
    return replace(
        state,
        applying=still_applying,
        patch_state=PatchState.APPLY_FAILED,
        errors=(error,),
        pending_reports=reports,
    )


def check_failed(state: State, error: ErrorRecord, now: datetime, *, retryable: bool) -> State:
    """A check that failed with `error`.

    Only a `retryable` failure (network or server trouble) counts towards
    backoff; any other (metadata or credential rejected, a bad setting) resets
    the count, so the next check waits the normal interval: retrying sooner
    would meet the same refusal.
    """
    return replace(
        state,
        check_state=CheckState.CHECK_FAILED,
        last_check=now,
        failures=state.failures + 1 if retryable else 0,
        errors=(error,),
    )


def unsupported(state: State, kernel_key: str, error: ErrorRecord, now: datetime) -> State:
    return replace(
        state,
        kernel=kernel_key,
        supported=Support.UNSUPPORTED,
        check_state=CheckState.CHECKED,
        last_check=now,
        failures=0,
        patch_state=PatchState.UNAPPLIED,
        errors=(error,),
    )


def scheduled(state: State, next_check: datetime | None) -> State:
    return replace(state, next_check=next_check)


def reports_sent(state: State, sent: int) -> State:
    return replace(state, pending_reports=state.pending_reports[sent:])


def watching(state: State, watch: HealthWatch) -> State:
    """A patch was applied: watch it until ``watch.until`` before judging it."""
    return replace(state, watch=watch, health=Health(watch.patch_id, "watching"))


def judged(state: State, health: Health, report: Report) -> State:
    """The health window passed: record the verdict and queue it for the service."""
    return replace(
        state,
        watch=None,
        health=health,
        pending_reports=(*state.pending_reports, report),
    )


def crashed(state: State, crash: Crash, kernel: str) -> State:
    """An apply intent from an earlier boot: the machine went down while `crash` was young.

    The patch is blocked (never loaded again until an administrator clears it)
    and the service is told, which counts it towards halting the rollout.
    """
    report = Report(
        crash.patch_id,
        kernel,
        "crashed",
        reason="the machine crashed or was reset while this patch was new",
    )
    return replace(
        state,
        crashed=crash,
        watch=None,
        health=None,
        pending_reports=(*state.pending_reports, report),
    )


def crash_cleared(state: State) -> State:
    return replace(state, crashed=None)


def leaving_failed(state: State, error: ErrorRecord) -> State:
    """The kernel would not remove a revoked patch; it stays, and the next check retries."""
    return replace(state, errors=(error,))


def reverted(
    state: State, revoked: Revoked, report: Report, *, replaced: PatchRecord | None
) -> State:
    """We left revoked patch `revoked`: for `replaced` (already recorded as applied by the
    apply), or for nothing when it was removed."""
    if replaced is None:
        state = replace(
            state,
            applied=None,
            available=None,
            watch=None,
            health=None,
            patch_state=PatchState.NOTHING_TO_APPLY,
        )
    return replace(
        state,
        revoked=revoked,
        errors=(),
        pending_reports=(*state.pending_reports, report),
    )
