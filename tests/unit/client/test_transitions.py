from __future__ import annotations

from datetime import UTC, datetime

from livepatch.client import transitions as t
from livepatch.client.planner import Apply, KernelUpgradeRequired, NothingToApply, UpToDate
from livepatch.client.state import (
    CheckState,
    Enrolment,
    ErrorRecord,
    PatchState,
    Report,
    State,
    Support,
)
from livepatch.client.transitions import ModuleStatus
from tests.unit.client.fakes import KERNEL, T0, patch

ENROLMENT = Enrolment("m-1", "community", "https://patches.test", T0)
P3 = t.record(patch("3"), KERNEL)
P4 = t.record(patch("4"), KERNEL)
LIVE = ModuleStatus(enabled=True, transition=False)
MOVING = ModuleStatus(enabled=True, transition=True)


def base(**changes) -> State:
    from dataclasses import replace

    return replace(State(enrolment=ENROLMENT, kernel=KERNEL), **changes)


def test_record_lower_cases_cve_names():
    assert [fix.name for fix in P3.fixes] == ["cve-2024-1086"]


def test_reboot_into_another_kernel_forgets_the_old_kernels_patch():
    state = base(applied=P3, patch_state=PatchState.APPLIED, supported=Support.SUPPORTED)
    new = t.reconcile(state, "6.1.0-57-amd64", {})
    assert new.kernel == "6.1.0-57-amd64"
    assert new.applied is None and new.available is None
    assert new.patch_state is PatchState.UNAPPLIED
    assert new.check_state is CheckState.NEEDS_CHECK
    assert new.supported is Support.UNKNOWN
    assert new.enrolment == ENROLMENT


def test_crash_before_load_forgets_the_intent():
    state = t.applying(base(), P3)
    new = t.reconcile(state, KERNEL, {})
    assert new.applying is None and new.applied is None
    assert new.patch_state is PatchState.UNAPPLIED


def test_crash_after_load_adopts_the_loaded_patch_and_queues_its_report():
    state = t.applying(base(), P3)
    new = t.reconcile(state, KERNEL, {P3.module_name: LIVE})
    assert new.applied == P3 and new.applying is None
    assert new.patch_state is PatchState.APPLIED
    assert new.pending_reports == (Report(P3.patch_id, KERNEL, "applied"),)


def test_crash_during_transition_stays_applying():
    state = t.applying(base(), P3)
    new = t.reconcile(state, KERNEL, {P3.module_name: MOVING})
    assert new.applying == P3 and new.patch_state is PatchState.APPLYING


def test_crash_mid_replace_keeps_whichever_the_kernel_has():
    state = t.applying(base(applied=P3, patch_state=PatchState.APPLIED), P4)
    assert t.reconcile(state, KERNEL, {P3.module_name: LIVE}).applied == P3
    after = t.reconcile(state, KERNEL, {P4.module_name: LIVE})
    assert after.applied == P4 and after.patch_state is PatchState.APPLIED


def test_patch_unloaded_behind_our_back_is_no_longer_applied():
    state = base(applied=P3, patch_state=PatchState.APPLIED)
    new = t.reconcile(state, KERNEL, {P3.module_name: ModuleStatus(False, False)})
    assert new.applied is None and new.patch_state is PatchState.UNAPPLIED


def test_reconcile_is_idempotent():
    state = t.applying(base(applied=P3), P4)
    once = t.reconcile(state, KERNEL, {P4.module_name: LIVE})
    assert t.reconcile(once, KERNEL, {P4.module_name: LIVE}) == once


def test_planned_outcomes_set_support_and_patch_state():
    now = datetime(2026, 8, 2, tzinfo=UTC)
    upgrade = t.planned(base(), KernelUpgradeRequired(), KERNEL, now)
    assert upgrade.supported is Support.KERNEL_UPGRADE_REQUIRED
    assert upgrade.patch_state is PatchState.KERNEL_UPGRADE_REQUIRED
    assert upgrade.last_check == now and upgrade.check_state is CheckState.CHECKED
    nothing = t.planned(
        base(failures=3, errors=(ErrorRecord("x", "y"),)), NothingToApply(), KERNEL, now
    )
    assert nothing.patch_state is PatchState.NOTHING_TO_APPLY
    assert nothing.failures == 0 and nothing.errors == ()
    current = t.planned(base(applied=P3), UpToDate(patch("3")), KERNEL, now)
    assert current.patch_state is PatchState.APPLIED and current.available == P3
    todo = t.planned(base(), Apply(patch("4")), KERNEL, now)
    assert todo.available == P4 and todo.patch_state is PatchState.UNAPPLIED


def test_apply_failure_keeps_the_previous_patch():
    state = t.applying(base(applied=P3), P4)
    report = Report(P4.patch_id, KERNEL, "failed", 1, "lockdown-refused: x")
    failed = t.apply_failed(state, ErrorRecord("lockdown-refused", "x"), report)
    assert failed.applied == P3 and failed.applying is None
    assert failed.patch_state is PatchState.APPLY_FAILED
    assert failed.errors == (ErrorRecord("lockdown-refused", "x"),)
    assert failed.pending_reports == (report,)


def test_a_patch_in_transition_keeps_the_state_applying_whatever_the_plan():
    now = datetime(2026, 8, 2, tzinfo=UTC)
    moving = t.applying(base(applied=P3), P4)
    for decision in (UpToDate(patch("3")), NothingToApply(), Apply(patch("4"))):
        assert t.planned(moving, decision, KERNEL, now).patch_state is PatchState.APPLYING


def test_stalled_apply_stays_applying_only_while_the_kernel_holds_it():
    state = t.applying(base(applied=P3), P4)
    error = ErrorRecord("transition-stalled", "stalled")
    stalled = t.apply_failed(state, error, None, still_applying=P4)
    held = t.reconcile(stalled, KERNEL, {P3.module_name: LIVE, P4.module_name: MOVING})
    assert held.applying == P4 and held.applied == P3
    assert held.patch_state is PatchState.APPLYING and held.errors == (error,)
    gone = t.reconcile(stalled, KERNEL, {P3.module_name: LIVE})
    assert gone.applying is None and gone.patch_state is PatchState.APPLY_FAILED


def test_check_failure_counts_and_success_resets():
    down = ErrorRecord("service-unreachable", "down")
    state = t.check_failed(base(), down, T0, retryable=True)
    state = t.check_failed(state, down, T0, retryable=True)
    assert state.failures == 2 and state.check_state is CheckState.CHECK_FAILED
    assert t.planned(state, NothingToApply(), KERNEL, T0).failures == 0


def test_a_non_retryable_failure_resets_the_backoff_count_but_is_recorded():
    down = ErrorRecord("service-unreachable", "down")
    rejected = ErrorRecord("metadata-rejected", "bad signature on timestamp")
    state = t.check_failed(
        t.check_failed(base(), down, T0, retryable=True), down, T0, retryable=True
    )
    state = t.check_failed(state, rejected, T0, retryable=False)
    assert state.failures == 0
    assert state.check_state is CheckState.CHECK_FAILED and state.errors == (rejected,)
    assert t.check_failed(state, down, T0, retryable=True).failures == 1


def test_reports_sent_drops_the_sent_prefix():
    r1, r2 = Report("a", KERNEL, "applied"), Report("b", KERNEL, "applied")
    assert t.reports_sent(base(pending_reports=(r1, r2)), 1).pending_reports == (r2,)


def test_disenrolled_keeps_the_record_of_loaded_patches_unless_unloaded():
    state = base(applied=P3, patch_state=PatchState.APPLIED)
    kept = t.disenrolled(state, unloaded=False)
    assert kept.enrolment is None and kept.applied == P3
    gone = t.disenrolled(state, unloaded=True)
    assert gone.enrolment is None and gone.applied is None
