from __future__ import annotations

import errno

import pytest

from livepatch.kernel import (
    AlreadyLoaded,
    KernelError,
    LoadedPatch,
    LockdownRefused,
    ModuleInUse,
    ModuleLoadFailed,
    ModulesDisabled,
    NotPermitted,
    OutOfMemory,
    SignatureRejected,
    TransitionBusy,
    WrongKernel,
)
from livepatch.kernel.decisions import (
    LoadContext,
    load_error,
    patch_in_transition,
    replaced_patches,
    unload_error,
)

PLAIN = LoadContext("lp", "6.1.0-56-amd64", "6.1.0-56-amd64", "none", False)


@pytest.mark.parametrize(
    ("code", "context", "expected", "words"),
    [
        (errno.EKEYREJECTED, PLAIN, SignatureRejected, "rejected the signature"),
        (errno.ENOKEY, PLAIN, SignatureRejected, "rejected the signature"),
        (errno.EBADMSG, PLAIN, SignatureRejected, "rejected the signature"),
        (errno.EEXIST, PLAIN, AlreadyLoaded, "already loaded"),
        (errno.EPERM, PLAIN, NotPermitted, "kernel-module-control"),
        (
            errno.EPERM,
            LoadContext("lp", "r", None, "integrity", False),
            LockdownRefused,
            "lockdown (integrity mode)",
        ),
        (
            errno.EPERM,
            LoadContext("lp", "r", None, "integrity", True),
            ModulesDisabled,
            "modules_disabled=1",
        ),
        (errno.EACCES, PLAIN, NotPermitted, "did not permit loading module lp"),
        (
            errno.ENOEXEC,
            LoadContext("lp", "6.1.0-56-amd64", "6.1.0-99-amd64", None, False),
            WrongKernel,
            "built for 6.1.0-99-amd64, not for the running kernel 6.1.0-56-amd64",
        ),
        (errno.EINVAL, PLAIN, WrongKernel, "conflicts with the livepatches already loaded"),
        (errno.ENOENT, PLAIN, WrongKernel, "ENOENT"),
        (errno.ENOMEM, PLAIN, OutOfMemory, "ran out of memory"),
        (
            errno.EBUSY,
            LoadContext("lp", "r", None, None, None, busy_patch="other"),
            TransitionBusy,
            "other is still in transition",
        ),
        (errno.EBUSY, PLAIN, ModuleLoadFailed, "EBUSY"),
        (errno.ENODEV, PLAIN, ModuleLoadFailed, "ENODEV (No such device)"),
    ],
)
def test_load_errno_means(
    code: int, context: LoadContext, expected: type[KernelError], words: str
) -> None:
    error = load_error(code, context)
    assert type(error) is expected
    assert words in str(error)
    assert error.errno == code
    assert str(error).endswith(".")


def test_einval_for_a_module_built_for_this_kernel_does_not_blame_the_kernel() -> None:
    context = LoadContext("lp", "6.1.0-56-amd64", "6.1.0-56-amd64", None, False)
    error = load_error(errno.EINVAL, context)
    assert isinstance(error, WrongKernel)
    assert str(error) == (
        "The kernel refused module lp (EINVAL (Invalid argument)): it was built for the "
        "running kernel 6.1.0-56-amd64, so it conflicts with the livepatches already loaded "
        "or patches something this kernel lacks (the kernel log says which)."
    )


def test_wrong_kernel_without_vermagic_says_another_kernel() -> None:
    error = load_error(errno.ENOEXEC, LoadContext("lp", "6.1.0-56-amd64", None, None, None))
    assert "built for another kernel" in str(error)
    assert error.code == "wrong-kernel"


@pytest.mark.parametrize(
    ("code", "disabled", "expected"),
    [
        (errno.EWOULDBLOCK, False, ModuleInUse),
        (errno.EBUSY, False, ModuleInUse),
        (errno.EPERM, True, ModulesDisabled),
        (errno.EPERM, False, NotPermitted),
        (errno.EFAULT, False, ModuleLoadFailed),
    ],
)
def test_unload_errno_means(code: int, disabled: bool, expected: type[KernelError]) -> None:
    error = unload_error(code, module="lp", refcount=1, modules_disabled=disabled)
    assert type(error) is expected


def test_module_in_use_reports_the_refcount() -> None:
    error = unload_error(errno.EWOULDBLOCK, module="lp", refcount=2, modules_disabled=False)
    assert "(reference count 2)" in str(error)


def patch(name: str, enabled: bool = True, transition: bool = False) -> LoadedPatch:
    return LoadedPatch(name, enabled, transition, None, ())


def test_replaced_patches_are_the_ones_no_longer_enabled() -> None:
    before = [patch("a"), patch("b"), patch("off", enabled=False)]
    after = [patch("a", enabled=False), patch("new")]
    assert replaced_patches(before, after, new="new") == ["a", "b"]
    assert replaced_patches(before, [*before, patch("new")], new="new") == []


def test_patch_in_transition_ignores_the_one_asked_about() -> None:
    patches = [patch("a"), patch("b", transition=True)]
    assert patch_in_transition(patches, other_than="a") == "b"
    assert patch_in_transition(patches, other_than="b") is None
