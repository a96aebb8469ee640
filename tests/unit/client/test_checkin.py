from __future__ import annotations

import errno
import os
from dataclasses import replace
from datetime import timedelta

import pytest

from livepatch.client import commands
from livepatch.client.checkin import CheckIn
from livepatch.client.errors import (
    AlreadyEnabled,
    MetadataRejected,
    NotConfigured,
    NotEnabled,
    ServiceUnreachable,
    UnknownToken,
    UnsupportedKernel,
)
from livepatch.client.kernelport import KernelAdapter
from livepatch.client.state import CheckState, CredentialFile, PatchState, StateFile, Support
from livepatch.client.transitions import ModuleStatus
from livepatch.kernel import (
    LivepatchDriver,
    LockdownRefused,
    ModuleInUse,
    ModulesDisabled,
    TransitionStalled,
)
from tests.unit.client.fakes import KERNEL, World, patch
from tests.unit.kernel.fakes import FakeKernel as TreeKernel
from tests.unit.kernel.fakes import FakeSyscalls


def enrol(world: World) -> None:
    commands.enable(world.runtime(), "good-token")


def state(world: World):
    return StateFile(world.paths.state).load()


def test_enable_pins_root_saves_private_credential_and_checks_inline(world):
    world.metadata.patches_list = [patch("3")]
    result = commands.enable(world.runtime(), "good-token")
    assert result.outcome is not None and result.outcome.error is None
    assert (world.paths.metadata / "root.json").read_bytes() == b'{"signed": {}}'
    credential = CredentialFile(world.paths.credential).load()
    assert credential is not None and credential.token == "secret-credential"
    assert world.kernel.loads == [patch("3").module_name]
    saved = state(world)
    assert saved.patch_state is PatchState.APPLIED and saved.enrolment is not None
    assert [r.result for r in world.service.reports] == ["applied"]
    assert saved.pending_reports == ()
    assert "secret-credential" not in world.paths.state.read_text()


def test_enable_sends_a_left_over_credential_as_proof_of_identity(world):
    enrol(world)
    assert world.service.proofs == [None]
    StateFile(world.paths.state).save(replace(state(world), enrolment=None))
    enrol(world)
    assert world.service.proofs == [None, "secret-credential"]


def test_enable_twice_is_refused(world):
    enrol(world)
    with pytest.raises(AlreadyEnabled):
        enrol(world)


def test_bad_token_leaves_the_machine_not_enabled(world):
    with pytest.raises(UnknownToken) as caught:
        commands.enable(world.runtime(), "bad-token")
    assert "Unknown Auth-Token" in str(caught.value)
    assert "bad-token" not in str(caught.value)
    assert state(world).enrolment is None
    assert CredentialFile(world.paths.credential).load() is None


def test_unsupported_kernel_is_refused_before_enrolling(world):
    world.kernel.unsupported = "The kernel has no livepatch support."
    with pytest.raises(UnsupportedKernel) as caught:
        enrol(world)
    assert "unsupported kernel" in str(caught.value)
    assert world.service.calls == []


def test_enable_needs_a_remote_server(world):
    world.paths.config.unlink()
    with pytest.raises(NotConfigured):
        enrol(world)


def test_check_without_enrolment(world):
    with pytest.raises(NotEnabled):
        CheckIn(world.runtime()).run()


def test_kernel_upgrade_required_when_nothing_is_published_for_this_kernel(world):
    world.metadata.patches_list = [patch("3", kernel="6.1.0-57-amd64")]
    enrol(world)
    saved = state(world)
    assert saved.patch_state is PatchState.KERNEL_UPGRADE_REQUIRED
    assert saved.supported is Support.KERNEL_UPGRADE_REQUIRED
    assert world.kernel.loads == []


def test_reboot_into_new_kernel_applies_that_kernels_patch_only(world):
    old, new = patch("3"), patch("1", kernel="6.1.0-57-amd64", module="lp_new")
    world.metadata.patches_list = [old, new]
    enrol(world)
    assert world.kernel.loads == [old.module_name]
    world.kernel.key = world.kernel.release = "6.1.0-57-amd64"
    world.kernel.modules = {}
    outcome = CheckIn(world.runtime()).run()
    assert outcome.error is None
    assert world.kernel.loads == [old.module_name, "lp_new"]
    assert state(world).applied.kernel == "6.1.0-57-amd64"


def test_halted_patch_is_never_loaded(world):
    world.metadata.patches_list = [patch("3", halted=True)]
    enrol(world)
    assert world.kernel.loads == []
    assert state(world).patch_state is PatchState.NOTHING_TO_APPLY


def test_signature_failure_loads_nothing_and_reports(world):
    p = patch("3")
    world.metadata.patches_list = [p]
    world.metadata.tampered.add(p.patch_id)
    result = commands.enable(world.runtime(), "good-token")
    assert result.outcome.error.code == "signature-failure"
    assert world.kernel.loads == []
    saved = state(world)
    assert saved.patch_state is PatchState.APPLY_FAILED
    assert world.service.reports[0].result == "failed"
    assert world.service.reports[0].reason.startswith("signature-failure")
    assert list(world.paths.modules.iterdir()) == []


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (LockdownRefused("lp", "integrity", errno=1), "lockdown-refused"),
        (
            TransitionStalled(
                "lp", target="patched", timeout=60.0, tasks=[], tasks_known=True, state=None
            ),
            "transition-stalled",
        ),
    ],
)
def test_kernel_refusals_are_recorded_with_their_code(world, error, code):
    world.metadata.patches_list = [patch("3")]
    world.kernel.load_error = error
    result = commands.enable(world.runtime(), "good-token")
    assert result.outcome.error is error
    saved = state(world)
    assert saved.patch_state is PatchState.APPLY_FAILED
    assert saved.errors[0].code == code and saved.applying is None
    assert world.service.reports[-1].result == "failed"


def test_modules_disabled_stops_before_download(world):
    world.metadata.patches_list = [patch("3")]
    world.kernel.loadable_error = ModulesDisabled()
    result = commands.enable(world.runtime(), "good-token")
    assert result.outcome.error.code == "modules-disabled"
    assert world.kernel.loads == []


def test_service_down_records_check_failure_and_counts(world):
    enrol(world)
    world.metadata.down = 2
    first = CheckIn(world.runtime()).run()
    second = CheckIn(world.runtime()).run()
    assert first.error.code == second.error.code == "service-unreachable"
    assert state(world).failures == 2
    assert state(world).check_state is CheckState.CHECK_FAILED
    assert CheckIn(world.runtime()).run().error is None
    assert state(world).failures == 0


def test_only_retryable_failures_count_towards_backoff(world):
    enrol(world)
    world.metadata.down = 2
    CheckIn(world.runtime()).run()
    CheckIn(world.runtime()).run()
    assert state(world).failures == 2
    world.metadata.refusal = MetadataRejected("The timestamp metadata is not signed.")
    outcome = CheckIn(world.runtime()).run()
    assert outcome.error.code == "metadata-rejected"
    saved = state(world)
    assert saved.failures == 0 and saved.check_state is CheckState.CHECK_FAILED
    assert [error.code for error in saved.errors] == ["metadata-rejected"]


@pytest.mark.parametrize("content", [b"{", b"\xff\xfe", b"[]", b'{"check-interval": 0}'])
def test_an_unreadable_config_file_is_recorded_as_the_check_failure(world, content):
    enrol(world)
    world.paths.config.write_bytes(content)
    outcome = CheckIn(world.runtime()).run()
    assert outcome.error.code == "invalid-config"
    [error] = state(world).errors
    assert error.code == "invalid-config"
    assert error.message.startswith(f"The config file {world.paths.config} is unreadable (")
    assert error.message.endswith(
        "); set the settings again with `livepatch config KEY=VALUE` to fix it."
    )
    assert state(world).failures == 0  # not worth retrying before someone fixes it
    commands.set_config(world.paths, ["remote-server=https://patches.test"])
    assert CheckIn(world.runtime()).run().error is None


def test_reports_queue_while_the_service_is_down_and_flush_later(world):
    world.metadata.patches_list = [patch("3")]
    world.service.down = 0
    enrol(world)
    world.service.reports.clear()
    world.metadata.patches_list.append(patch("4"))
    original = world.service.report

    def failing(*args):
        raise ServiceUnreachable("u", "r")

    world.service.report = failing
    CheckIn(world.runtime()).run()
    assert [r.patch_id for r in state(world).pending_reports] == [patch("4").patch_id]
    world.service.report = original
    CheckIn(world.runtime()).run()
    assert [r.patch_id for r in world.service.reports] == [patch("4").patch_id]
    assert state(world).pending_reports == ()


def test_credential_is_renewed_before_expiry(world):
    enrol(world)
    assert world.service.renewals == 0
    world.clock.advance(timedelta(days=20).total_seconds())
    CheckIn(world.runtime()).run()
    assert world.service.renewals == 0
    world.clock.advance(timedelta(days=3).total_seconds())
    CheckIn(world.runtime()).run()
    assert world.service.renewals == 1
    assert CredentialFile(world.paths.credential).load().token == "renewed-1"
    assert world.metadata.credentials[-1] == "renewed-1"


def test_unsupported_kernel_during_check(world):
    enrol(world)
    world.kernel.unsupported = "no livepatch"
    outcome = CheckIn(world.runtime()).run()
    assert outcome.error.code == "unsupported-kernel"
    assert state(world).supported is Support.UNSUPPORTED


def test_newer_patch_replaces_older(world):
    world.metadata.patches_list = [patch("3")]
    enrol(world)
    world.metadata.patches_list.append(patch("4"))
    outcome = CheckIn(world.runtime()).run()
    assert outcome.applied == patch("4")
    assert state(world).applied.version == "4"
    assert list(world.kernel.modules) == [patch("4").module_name]
    assert [p.name for p in world.paths.modules.iterdir()] == [f"{patch('4').module_name}.ko"]


def test_disable_keeps_patches_loaded_unless_unload(world):
    world.metadata.patches_list = [patch("3")]
    enrol(world)
    result = commands.disable(world.runtime(), unload=False)
    assert result.kept == (patch("3").module_name,) and result.unloaded == ()
    assert world.kernel.modules
    assert CredentialFile(world.paths.credential).load() is None
    assert "deregister" in world.service.calls
    with pytest.raises(NotEnabled):
        commands.disable(world.runtime(), unload=False)


def test_disable_unload(world):
    world.metadata.patches_list = [patch("3")]
    enrol(world)
    result = commands.disable(world.runtime(), unload=True)
    assert result.unloaded == (patch("3").module_name,)
    assert world.kernel.modules == {}
    assert state(world).applied is None


def test_disable_while_service_down_still_disables_locally(world):
    enrol(world)
    world.service.down = 1
    result = commands.disable(world.runtime(), unload=False)
    assert result.service_error.code == "service-unreachable"
    assert state(world).enrolment is None


def test_disable_keeps_the_credential_as_proof_when_the_service_was_not_told(world):
    enrol(world)
    world.service.down = 1
    commands.disable(world.runtime(), unload=False)
    kept = CredentialFile(world.paths.credential).load()
    assert kept is not None and kept.token == "secret-credential"
    assert world.paths.credential.stat().st_mode & 0o777 == 0o600
    enrol(world)
    assert world.service.proofs == [None, "secret-credential"]


def test_disable_removes_the_credential_once_the_service_forgot_the_machine(world):
    enrol(world)
    world.service.down = 1
    commands.disable(world.runtime(), unload=False)
    enrol(world)
    commands.disable(world.runtime(), unload=False)
    assert CredentialFile(world.paths.credential).load() is None


def in_use(name: str) -> ModuleInUse:
    return ModuleInUse(name, errno=errno.EBUSY, refcount=1)


def stalled(name: str) -> TransitionStalled:
    return TransitionStalled(
        name, target="unpatched", timeout=60.0, tasks=[], tasks_known=False, state=None
    )


@pytest.mark.parametrize(
    ("step", "refusal"),
    [("disable", {"refuse_disable": stalled}), ("unload", {"refuse_unload": in_use})],
)
def test_disable_unload_refused_by_the_kernel_still_de_enrols(world, step, refusal):
    world.metadata.patches_list = [patch("3")]
    enrol(world)
    name = patch("3").module_name
    for attribute, make in refusal.items():
        setattr(world.kernel, attribute, {name: make(name)})
    result = commands.disable(world.runtime(), unload=True)
    [refused] = result.refused
    assert str(refused) == (
        f"Livepatch {name} stays loaded until the next reboot: the kernel refused to {step} "
        f"it ({make(name).code})."
    )
    assert refused.code == "unload-refused"
    assert result.unloaded == () and result.kept == (name,)
    assert name in world.kernel.modules and world.kernel.unloaded == []
    assert "deregister" in world.service.calls
    saved = state(world)
    assert saved.enrolment is None and saved.pending_reports == ()
    assert CredentialFile(world.paths.credential).load() is None
    assert list(world.paths.metadata.iterdir()) == []  # no pinned root left behind
    with pytest.raises(NotEnabled):
        commands.disable(world.runtime(), unload=True)


def test_disable_unload_takes_out_what_it_can_and_records_what_stays(world):
    world.metadata.patches_list = [patch("3")]
    enrol(world)
    world.kernel.stall = 1
    world.metadata.patches_list.append(patch("4"))
    assert CheckIn(world.runtime()).run().error.code == "transition-stalled"
    old, new = patch("3").module_name, patch("4").module_name
    world.kernel.modules[old] = ModuleStatus(enabled=True, transition=False)  # not replaced yet
    world.kernel.refuse_disable = {old: stalled(old)}
    result = commands.disable(world.runtime(), unload=True)
    assert result.unloaded == (new,) and result.kept == (old,)
    assert [error.code for error in result.refused] == ["unload-refused"]
    assert f"Livepatch {old} stays loaded" in str(result.refused[0])
    saved = state(world)
    assert saved.enrolment is None
    assert saved.applied is not None and saved.applied.module_name == old
    assert saved.applying is None


class HeldModules(FakeSyscalls):
    """A kernel that keeps a reference on every module: delete_module says EBUSY."""

    def delete_module(self, name: str, flags: int) -> None:
        self.kernel.delete_calls.append(name)
        raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))


@pytest.mark.parametrize(
    ("step", "cause", "stall", "syscalls"),
    [
        ("disable", "transition-stalled", True, FakeSyscalls),
        ("unload", "module-in-use", False, HeldModules),
    ],
)
def test_disable_unload_through_the_real_driver_never_forces(
    world, tmp_path, step, cause, stall, syscalls
):
    """The kernel layer over a fake /sys tree: a transition that never finishes,
    or a module the kernel will not release, is reported, not forced."""
    world.metadata.patches_list = [patch("3")]
    enrol(world)
    name = patch("3").module_name
    tree = TreeKernel(tmp_path / "kernel")
    tree.stall_next = stall  # a task never leaves the old code: no transition finishes
    tree.add_patch(name, transition=stall)
    driver = LivepatchDriver(tree.root, syscalls=syscalls(tree), clock=tree.clock, sleep=tree.sleep)
    rt = replace(world.runtime(), kernel=KernelAdapter(tree.root, driver=driver))
    result = commands.disable(rt, unload=True)
    assert [str(error) for error in result.refused] == [
        f"Livepatch {name} stays loaded until the next reboot: the kernel refused to {step} "
        f"it ({cause})."
    ]
    assert (tree.root / "sys/module" / name).is_dir()  # still loaded
    if stall:
        # never forced: a forced transition would have finished and freed the patch
        assert tree.read(f"sys/kernel/livepatch/{name}/transition") == "1"
        assert tree.delete_calls == []  # an enabled patch is never unloaded
    assert state(world).enrolment is None
    assert CredentialFile(world.paths.credential).load() is None


def test_status_reconciles_with_the_live_kernel_without_writing(world):
    world.metadata.patches_list = [patch("3")]
    enrol(world)
    before = world.paths.state.read_bytes()
    world.kernel.modules = {patch("3").module_name: ModuleStatus(False, False)}
    doc = commands.status(world.runtime())
    assert doc["Status"][0]["Livepatch"]["State"] == "unapplied"
    assert doc["Status"][0]["Kernel"] == KERNEL
    assert world.paths.state.read_bytes() == before


def test_status_without_the_patch_list_names_the_plug_first(world, monkeypatch):
    """livepatch-sysfs disconnected inside the snap: status still answers from the record,
    and its first error says which plug to connect (seen under the real snapd)."""
    from pathlib import Path

    from livepatch.kernel.errors import AccessDenied

    world.metadata.patches_list = [patch("3")]
    enrol(world)
    denied = AccessDenied(Path("/sys/kernel/livepatch"), "livepatch-sysfs", errno=13)

    def refuse():
        raise denied

    monkeypatch.setattr(world.kernel, "loaded", refuse)
    doc = commands.status(world.runtime())
    assert doc["Errors"][0] == {"code": "access-denied", "message": str(denied)}
    assert "connect its livepatch-sysfs plug" in doc["Errors"][0]["message"]
    assert doc["Status"][0]["Kernel"] == KERNEL


def test_stalled_transition_is_never_recorded_as_applied(world):
    """The kernel keeps a stalled patch in transition: the state says applying, and
    later checks wait for it again rather than calling it applied."""
    p3 = patch("3")
    world.metadata.patches_list = [p3]
    world.kernel.stall = 2
    first = commands.enable(world.runtime(), "good-token").outcome
    assert first.error.code == "transition-stalled" and first.failed == p3
    saved = state(world)
    assert saved.applied is None and saved.applying.patch_id == p3.patch_id
    assert saved.patch_state is PatchState.APPLYING
    assert saved.errors[0].code == "transition-stalled"
    assert commands.status(world.runtime())["Status"][0]["Livepatch"]["State"] == "applying"

    second = CheckIn(world.runtime()).run()  # still stalled: waited again, still not applied
    assert second.error.code == "transition-stalled"
    assert world.kernel.loads == [p3.module_name, p3.module_name]
    assert state(world).applied is None and state(world).patch_state is PatchState.APPLYING

    world.kernel.finish_transitions()  # the blocking task moved on
    doc = commands.status(world.runtime())
    assert doc["Status"][0]["Livepatch"]["State"] == "applied"
    third = CheckIn(world.runtime()).run()
    assert third.error is None
    saved = state(world)
    assert saved.applied.patch_id == p3.patch_id and saved.applying is None
    assert saved.patch_state is PatchState.APPLIED
    assert [r.result for r in world.service.reports] == ["failed", "failed", "applied"]


def test_a_newer_patch_waits_for_the_one_still_in_transition(world):
    p3, p4 = patch("3"), patch("4")
    world.metadata.patches_list = [p3]
    world.kernel.stall = 1
    enrol(world)
    world.metadata.patches_list.append(p4)
    outcome = CheckIn(world.runtime()).run()  # p3 completes first; p4 is not loaded over it
    assert outcome.applied == p3
    assert world.kernel.loads == [p3.module_name, p3.module_name]
    outcome = CheckIn(world.runtime()).run()
    assert outcome.applied == p4
    assert state(world).applied.patch_id == p4.patch_id


def test_stalled_patch_reversed_by_the_administrator_is_not_applying(world):
    world.metadata.patches_list = [patch("3")]
    world.kernel.stall = 1
    enrol(world)
    world.kernel.modules = {}  # echo 0 > enabled reversed the transition, then rmmod
    doc = commands.status(world.runtime())
    assert doc["Status"][0]["Livepatch"]["State"] == "unapplied"
    assert doc["Applied-Patches"] == []
