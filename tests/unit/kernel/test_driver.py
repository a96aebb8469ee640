from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

import pytest

from livepatch.kernel import (
    AccessDenied,
    AlreadyLoaded,
    InvalidModule,
    LivepatchDriver,
    LivepatchUnsupported,
    LockdownRefused,
    ModuleInUse,
    ModulesDisabled,
    NotALivepatch,
    PatchStillEnabled,
    SignatureRejected,
    StalledTask,
    TransitionBusy,
    TransitionStalled,
    WrongKernel,
)
from livepatch.kernel.sysfs import PatchedObject
from tests.unit.kernel.fakes import FakeKernel, deny

ModuleFile = Callable[..., Path]


def test_load_waits_for_the_transition(
    driver: LivepatchDriver, kernel: FakeKernel, module_file: ModuleFile
) -> None:
    result = driver.load(module_file("lp_one"), params="x=1", timeout=5)
    assert result.outcome == "applied"
    assert result.name == "lp_one"
    assert result.patch.state == "applied"
    assert result.patch.objects == (PatchedObject("vmlinux", True),)
    assert result.replaced == () and result.unloaded == () and not result.forced
    assert kernel.finit_calls == [("lp_one", "x=1")]
    assert 0.3 <= result.duration < 1
    assert [patch.name for patch in driver.list_patches()] == ["lp_one"]


def test_loading_an_applied_patch_again_reports_it(
    driver: LivepatchDriver, kernel: FakeKernel, module_file: ModuleFile
) -> None:
    path = module_file("lp_one")
    driver.load(path, timeout=5)
    again = driver.load(path, timeout=5)
    assert again.outcome == "already-applied"
    assert again.patch.state == "applied"
    assert len(kernel.finit_calls) == 1


def test_loading_a_patch_still_patching_waits_for_it(
    driver: LivepatchDriver, kernel: FakeKernel, module_file: ModuleFile
) -> None:
    kernel.add_patch("lp_one", transition=True)
    result = driver.load(module_file("lp_one"), timeout=5)
    assert (result.outcome, result.patch.state) == ("applied", "applied")
    assert kernel.finit_calls == []


def test_a_patch_being_disabled_is_not_loaded_over(
    driver: LivepatchDriver, kernel: FakeKernel, module_file: ModuleFile
) -> None:
    kernel.add_patch("lp_one", enabled=False, transition=True)
    with pytest.raises(TransitionBusy, match="lp_one is still in transition"):
        driver.load(module_file("lp_one"), timeout=5)


def test_a_stale_disabled_copy_is_unloaded_then_reloaded(
    driver: LivepatchDriver, kernel: FakeKernel, module_file: ModuleFile
) -> None:
    kernel.add_inert_module("lp_one")
    result = driver.load(module_file("lp_one"), timeout=5)
    assert result.unloaded == ("lp_one",)
    assert result.patch.state == "applied"
    assert kernel.delete_calls == ["lp_one"]


def test_a_non_livepatch_module_of_the_same_name_is_left_alone(
    driver: LivepatchDriver, kernel: FakeKernel, module_file: ModuleFile
) -> None:
    kernel.add_inert_module("lp_one", livepatch=False)
    with pytest.raises(NotALivepatch):
        driver.load(module_file("lp_one"), timeout=5)
    assert kernel.delete_calls == [] and kernel.finit_calls == []


def test_atomic_replace_unloads_the_replaced_patches(
    driver: LivepatchDriver, kernel: FakeKernel, module_file: ModuleFile
) -> None:
    driver.load(module_file("lp_one"), timeout=5)
    driver.load(module_file("lp_two"), timeout=5)
    result = driver.load(module_file("lp_three"), params="replace=1", timeout=5)
    assert result.replaced == ("lp_one", "lp_two")
    assert result.unloaded == ("lp_one", "lp_two")
    assert result.left_loaded == ()
    assert [patch.name for patch in driver.list_patches()] == ["lp_three"]
    assert not (kernel.root / "sys/module/lp_one").exists()


def test_a_replaced_module_that_stays_busy_is_reported(
    driver: LivepatchDriver, kernel: FakeKernel, module_file: ModuleFile
) -> None:
    driver.load(module_file("lp_one"), timeout=5)
    kernel.stall_next = False
    original_complete = kernel._complete

    def keep_reference(*args: object, **kwargs: object) -> None:
        original_complete(*args, **kwargs)  # type: ignore[arg-type]
        if (kernel.root / "sys/module/lp_one").exists():
            kernel.write("sys/module/lp_one/refcnt", "1\n")

    kernel._complete = keep_reference  # type: ignore[method-assign]
    result = driver.load(module_file("lp_two"), params="replace=1", timeout=5)
    assert result.replaced == ("lp_one",)
    assert result.unloaded == ()
    assert result.left_loaded == ("lp_one",)


def test_refused_before_any_syscall_when_modules_are_disabled(
    driver: LivepatchDriver, kernel: FakeKernel, module_file: ModuleFile
) -> None:
    kernel.write("proc/sys/kernel/modules_disabled", "1\n")
    with pytest.raises(ModulesDisabled) as raised:
        driver.load(module_file(), timeout=5)
    assert raised.value.errno is None
    assert kernel.finit_calls == []


def test_refused_before_any_syscall_without_livepatch_support(
    driver: LivepatchDriver, kernel: FakeKernel, module_file: ModuleFile
) -> None:
    (kernel.root / "sys/kernel/livepatch").rmdir()
    with pytest.raises(LivepatchUnsupported, match="CONFIG_LIVEPATCH"):
        driver.load(module_file(), timeout=5)
    assert kernel.finit_calls == []


def test_non_livepatch_and_missing_modules_are_refused(
    driver: LivepatchDriver, kernel: FakeKernel, module_file: ModuleFile, tmp_path: Path
) -> None:
    with pytest.raises(NotALivepatch, match="lacks livepatch=Y"):
        driver.load(module_file("plain", livepatch=False), timeout=5)
    with pytest.raises(InvalidModule, match="does not exist"):
        driver.load(tmp_path / "missing.ko", timeout=5)
    assert kernel.finit_calls == []


def test_another_patch_in_transition_blocks_loading(
    driver: LivepatchDriver, kernel: FakeKernel, module_file: ModuleFile
) -> None:
    kernel.stall_next = True
    kernel.add_patch("stuck", transition=True)
    with pytest.raises(TransitionBusy, match="stuck"):
        driver.load(module_file("lp_one"), timeout=5)
    assert kernel.finit_calls == []


@pytest.mark.parametrize(
    ("code", "lockdown", "expected"),
    [
        (errno.EKEYREJECTED, "[none] integrity", SignatureRejected),
        (errno.EPERM, "none [integrity] confidentiality", LockdownRefused),
        (errno.ENOEXEC, "[none]", WrongKernel),
        (errno.EEXIST, "[none]", AlreadyLoaded),
    ],
)
def test_syscall_errors_become_specific_errors(
    driver: LivepatchDriver,
    kernel: FakeKernel,
    module_file: ModuleFile,
    code: int,
    lockdown: str,
    expected: type[Exception],
) -> None:
    kernel.write("sys/kernel/security/lockdown", lockdown + "\n")
    kernel.fail_finit = code
    with pytest.raises(expected) as raised:
        driver.load(module_file("lp_one", vermagic="6.1.0-99-amd64 SMP "), timeout=5)
    assert getattr(raised.value, "errno", None) == code
    assert driver.list_patches() == []


def test_wrong_kernel_names_both_releases(
    driver: LivepatchDriver, kernel: FakeKernel, module_file: ModuleFile
) -> None:
    kernel.fail_finit = errno.ENOEXEC
    with pytest.raises(WrongKernel) as raised:
        driver.load(module_file("lp_one", vermagic="6.1.0-99-amd64 SMP "), timeout=5)
    assert "built for 6.1.0-99-amd64" in str(raised.value)
    assert "running kernel 6.1.0-56-amd64" in str(raised.value)


def test_a_stalled_transition_names_the_blocking_tasks(
    driver: LivepatchDriver, kernel: FakeKernel, module_file: ModuleFile
) -> None:
    kernel.stall_next = True
    kernel.add_task(1, "init", 1)
    kernel.add_task(42, "kworker/0:2", 0)
    kernel.add_task(100, "app", 1)
    kernel.add_task(100, "app-io", 0, tid=103)
    with pytest.raises(TransitionStalled) as raised:
        driver.load(module_file("lp_one"), timeout=2, signal_interval=0.5)
    stalled = raised.value
    assert stalled.tasks == [StalledTask(42, "kworker/0:2"), StalledTask(103, "app-io")]
    assert stalled.tasks_known
    assert stalled.target == "patching"
    assert stalled.state is not None and stalled.state.state == "patching"
    assert "kworker/0:2 (pid 42)" in str(stalled)
    assert "disable the patch to reverse it" in str(stalled)
    assert 2.0 <= kernel.now < 2.2
    # Nothing was forced or reverted: the caller decides.
    assert kernel.read("sys/kernel/livepatch/lp_one/transition") == "1"
    assert kernel.read("sys/kernel/livepatch/lp_one/enabled") == "1"


def test_signal_is_written_at_intervals_when_the_kernel_has_it(
    driver: LivepatchDriver, kernel: FakeKernel
) -> None:
    kernel.stall_next = True
    kernel.add_patch("lp_one", transition=True, signal=True)
    writes: list[float] = []
    original = driver.sysfs.signal

    def record(name: str) -> bool:
        writes.append(kernel.now)
        return original(name)

    driver.sysfs.signal = record  # type: ignore[method-assign]
    with pytest.raises(TransitionStalled):
        driver.wait("lp_one", timeout=2.0, signal_interval=0.5)
    assert writes == pytest.approx([0.5, 1.0, 1.5], abs=0.06)
    assert kernel.read("sys/kernel/livepatch/lp_one/signal") == "1"


def test_without_a_signal_attribute_nothing_is_written(
    driver: LivepatchDriver, kernel: FakeKernel
) -> None:
    kernel.stall_next = True
    kernel.add_patch("lp_one", transition=True)
    with pytest.raises(TransitionStalled):
        driver.wait("lp_one", timeout=1.0, signal_interval=0.2)
    assert not (kernel.patch_dir("lp_one") / "signal").exists()


def test_unknown_tasks_are_said_to_be_unknown(
    driver: LivepatchDriver, kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel.stall_next = True
    kernel.add_patch("lp_one", transition=True)
    kernel.add_task(5, "x", 0)
    deny(monkeypatch, kernel.root / "proc/5/task/5/patch_state")
    with pytest.raises(TransitionStalled) as raised:
        driver.wait("lp_one", timeout=0.5)
    assert raised.value.tasks == [] and not raised.value.tasks_known
    assert "cannot be read" in str(raised.value)


def test_force_only_when_asked(
    driver: LivepatchDriver, kernel: FakeKernel, module_file: ModuleFile
) -> None:
    kernel.stall_next = True
    result = driver.load(module_file("lp_one"), timeout=1, force=True)
    assert result.forced
    assert result.patch.state == "applied"


def test_disable_then_unload(
    driver: LivepatchDriver, kernel: FakeKernel, module_file: ModuleFile
) -> None:
    driver.load(module_file("lp_one"), timeout=5)
    with pytest.raises(PatchStillEnabled, match="disable it first"):
        driver.unload("lp_one")
    disabled = driver.disable("lp_one", timeout=5)
    assert (disabled.outcome, disabled.module_loaded, disabled.forced) == (
        "disabled",
        True,
        False,
    )
    assert driver.patch("lp_one") is None
    assert driver.disable("lp_one", timeout=5).outcome == "already-disabled"
    assert driver.unload("lp_one").outcome == "unloaded"
    assert driver.unload("lp_one").outcome == "not-loaded"
    assert driver.disable("lp_one", timeout=5).outcome == "not-loaded"
    assert kernel.delete_calls == ["lp_one"]


def test_disable_reverses_a_stalled_patching_transition(
    driver: LivepatchDriver, kernel: FakeKernel, module_file: ModuleFile
) -> None:
    kernel.stall_next = True
    with pytest.raises(TransitionStalled):
        driver.load(module_file("lp_one"), timeout=1)
    kernel.patches["lp_one"].stall = False
    result = driver.disable("lp_one", timeout=5)
    assert result.outcome == "disabled"
    assert driver.list_patches() == []


def test_disable_waits_while_another_patch_is_in_transition(
    driver: LivepatchDriver, kernel: FakeKernel
) -> None:
    kernel.add_patch("lp_one")
    kernel.stall_next = True
    kernel.add_patch("busy", transition=True)
    with pytest.raises(TransitionBusy, match="busy"):
        driver.disable("lp_one", timeout=5)
    assert kernel.read("sys/kernel/livepatch/lp_one/enabled") == "1"


def test_a_forced_patch_cannot_be_unloaded(
    driver: LivepatchDriver, kernel: FakeKernel, module_file: ModuleFile
) -> None:
    driver.load(module_file("lp_one"), timeout=5)
    kernel.stall_next = True
    kernel.patches["lp_one"].stall = True
    result = driver.disable("lp_one", timeout=1, force=True)
    assert result.forced and result.module_loaded
    with pytest.raises(ModuleInUse, match="reference count 1"):
        driver.unload("lp_one")


def test_unload_refuses_modules_that_are_not_livepatches(
    driver: LivepatchDriver, kernel: FakeKernel
) -> None:
    kernel.add_inert_module("e1000", livepatch=False)
    with pytest.raises(NotALivepatch):
        driver.unload("e1000")
    assert kernel.delete_calls == []


def test_write_denied_names_the_interface(
    driver: LivepatchDriver, kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel.add_patch("lp_one")
    real_open = Path.open

    def refuse(self: Path, mode: str = "r", *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        if "w" in mode:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_open(self, mode, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(AccessDenied) as raised:
        driver.disable("lp_one", timeout=5)
    assert raised.value.interface == "livepatch-sysfs"
    assert "sys/kernel/livepatch/lp_one/enabled" in str(raised.value)


def test_disable_survives_the_kernel_removing_the_patch_mid_read(
    driver: LivepatchDriver,
    kernel: FakeKernel,
    module_file: ModuleFile,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """sysfs answers ENODEV for an attribute whose object is being torn down.

    Seen on Debian's 6.1 in about one disable in 80: the read of `enabled` lands
    while the kernel removes the patch's directory after the transition.
    """
    driver.load(module_file("lp_one"), timeout=5)
    real_read = Path.read_bytes
    vanishing = kernel.patch_dir("lp_one")
    raised: list[Path] = []

    def read_bytes(self: Path) -> bytes:
        transition = (vanishing / "transition").exists() and real_read(vanishing / "transition")
        if self.parent == vanishing and not raised and transition == b"1\n":
            # The transition ends and the kernel tears the directory down under the read.
            raised.append(self)
            kernel.now = kernel.patches["lp_one"].complete_at or kernel.now
            kernel.tick()
            raise OSError(errno.ENODEV, "No such device", str(self))
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    result = driver.disable("lp_one", timeout=5)
    assert raised, "the ENODEV read was never reached"
    assert (result.outcome, result.forced) == ("disabled", False)
    assert driver.patch("lp_one") is None
