"""Pure decisions of the driver: which error an errno means, what was replaced.

No I/O here: the driver reads the kernel's state and passes it in, so every
branch is testable with plain values.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from dataclasses import dataclass

from livepatch.kernel.errors import (
    AlreadyLoaded,
    KernelError,
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
from livepatch.kernel.sysfs import LoadedPatch

SIGNATURE_ERRNOS = frozenset(
    {
        errno.EKEYREJECTED,  # the signature does not verify, or sig_enforce refused the module
        errno.ENOKEY,  # no trusted key matches the signer
        errno.EKEYEXPIRED,  # the matching key in the kernel's keyring expired
        errno.EKEYREVOKED,  # the matching key in the kernel's keyring was revoked
        errno.EBADMSG,  # the PKCS#7 signature is malformed
        errno.ENOPKG,  # unsupported signature algorithm or digest
        errno.ENODATA,  # no signature at all
    }
)
"""What finit_module returns when module signature checking refuses a module
(kernel/module/signing.c, crypto/asymmetric_keys). Without sig_enforce and
under lockdown the refusal is EPERM instead (see ``load_error``)."""
WRONG_KERNEL_ERRNOS = frozenset({errno.ENOEXEC, errno.EINVAL, errno.ENOENT})


@dataclass(frozen=True)
class LoadContext:
    """What the kernel looked like when a load failed, to tell causes apart."""

    module: str
    running_release: str
    built_for: str | None
    lockdown_mode: str | None
    modules_disabled: bool | None
    busy_patch: str | None = None


def load_error(code: int, context: LoadContext) -> KernelError:
    """The error that finit_module's errno `code` means, given `context`.

    EPERM has three causes the errno cannot tell apart: kernel lockdown
    refusing an untrusted signature, modules_disabled, or a missing
    CAP_SYS_MODULE (or seccomp, inside a snap). The lockdown mode and the
    modules_disabled sysctl, read after the failure, decide.
    """
    module = context.module
    if code in SIGNATURE_ERRNOS:
        return SignatureRejected(module, errno=code)
    if code == errno.EEXIST:
        return AlreadyLoaded(module, errno=code)
    if code == errno.EPERM:
        if context.modules_disabled:
            return ModulesDisabled(errno=code)
        if context.lockdown_mode not in (None, "none"):
            return LockdownRefused(module, str(context.lockdown_mode), errno=code)
        return NotPermitted(f"loading module {module}", errno=code)
    if code == errno.EACCES:
        return NotPermitted(f"loading module {module}", errno=code)
    if code == errno.EBUSY and context.busy_patch:
        return TransitionBusy(context.busy_patch, errno=code)
    if code in WRONG_KERNEL_ERRNOS:
        return WrongKernel(
            module, errno=code, running=context.running_release, built_for=context.built_for
        )
    if code == errno.ENOMEM:
        return OutOfMemory(module, errno=code)
    return ModuleLoadFailed(module, errno=code)


def unload_error(
    code: int, *, module: str, refcount: int | None, modules_disabled: bool | None
) -> KernelError:
    """The error that delete_module's errno `code` means."""
    if code in (errno.EWOULDBLOCK, errno.EBUSY):
        return ModuleInUse(module, errno=code, refcount=refcount)
    if code == errno.EPERM and modules_disabled:
        return ModulesDisabled(errno=code)
    if code in (errno.EPERM, errno.EACCES):
        return NotPermitted(f"unloading module {module}", errno=code)
    return ModuleLoadFailed(module, errno=code)


def patch_in_transition(patches: Sequence[LoadedPatch], *, other_than: str) -> str | None:
    """The name of a patch (not `other_than`) in transition; the kernel allows one."""
    for patch in patches:
        if patch.transition and patch.name != other_than:
            return patch.name
    return None


def replaced_patches(
    before: Sequence[LoadedPatch], after: Sequence[LoadedPatch], *, new: str
) -> list[str]:
    """Patches enabled before `new` was loaded that are no longer enabled after it.

    With atomic replace (klp_patch.replace) the kernel disables every other
    patch when the new one's transition completes and removes their sysfs
    directories; their modules stay loaded until someone unloads them.
    """
    still_enabled = {patch.name for patch in after if patch.enabled}
    return sorted(
        patch.name
        for patch in before
        if patch.enabled and patch.name != new and patch.name not in still_enabled
    )
