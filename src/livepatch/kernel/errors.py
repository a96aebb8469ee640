"""Errors of the kernel layer: each says what the kernel did and what to do.

Every class binds one message to a stable ``code``; the data a caller may act
on (errno, the patch state left behind, the tasks blocking a transition) is
kept on attributes so nothing has to be parsed out of the sentence.
"""

from __future__ import annotations

import errno as errno_codes
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from livepatch.errors import LivepatchError

if TYPE_CHECKING:
    from livepatch.kernel.sysfs import LoadedPatch


def errno_text(number: int) -> str:
    """``EPERM (Operation not permitted)`` for messages and logs."""
    name = errno_codes.errorcode.get(number, f"errno {number}")
    return f"{name} ({os.strerror(number)})"


class KernelError(LivepatchError):
    """Something the running kernel refused or could not do."""

    code = "kernel-error"

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class AccessDenied(KernelError):
    """A kernel file could not be read or written because of permissions."""

    code = "access-denied"

    def __init__(self, path: Path, interface: str, *, errno: int) -> None:
        super().__init__(
            f"Permission to access {path} was denied; run as root, or, inside the snap, "
            f"connect its {interface} plug (sudo snap connect livepatch:{interface}).",
            errno=errno,
        )
        self.path = path
        self.interface = interface


class LivepatchUnsupported(KernelError):
    code = "livepatch-unsupported"

    def __init__(self) -> None:
        super().__init__(
            "This kernel has no livepatch support (/sys/kernel/livepatch is missing), so "
            "patches cannot be applied; boot a kernel built with CONFIG_LIVEPATCH."
        )


class ModulesDisabled(KernelError):
    code = "modules-disabled"

    def __init__(self, *, errno: int | None = None) -> None:
        super().__init__(
            "Module loading is disabled on this machine (kernel.modules_disabled=1) until "
            "the next reboot, so no patch can be loaded; reboot without that setting to "
            "apply patches.",
            errno=errno,
        )


class LockdownRefused(KernelError):
    code = "lockdown-refused"

    def __init__(self, module: str, mode: str, *, errno: int | None = None) -> None:
        super().__init__(
            f"Kernel lockdown ({mode} mode) refused module {module} because it is not "
            "signed by a key the kernel trusts; enrol the patch signing certificate "
            "(mokutil --import) and reboot, or use patches signed by a trusted key.",
            errno=errno,
        )
        self.module = module
        self.mode = mode


class SignatureRejected(KernelError):
    code = "signature-rejected"

    def __init__(self, module: str, *, errno: int) -> None:
        super().__init__(
            f"The kernel rejected the signature of module {module} ({errno_text(errno)}); "
            "it only loads modules signed by a key it trusts, so enrol the patch signing "
            "certificate or use a correctly signed patch.",
            errno=errno,
        )
        self.module = module


class AlreadyLoaded(KernelError):
    code = "already-loaded"

    def __init__(self, module: str, *, errno: int | None = None, detail: str = "") -> None:
        super().__init__(
            f"A module named {module} is already loaded{detail}; unload it first if it "
            "should be replaced.",
            errno=errno,
        )
        self.module = module


class WrongKernel(KernelError):
    code = "wrong-kernel"

    def __init__(self, module: str, *, errno: int, running: str, built_for: str | None) -> None:
        if errno == errno_codes.EINVAL and built_for == running:
            # Its vermagic is this kernel's: the patch itself does not fit it.
            message = (
                f"The kernel refused module {module} ({errno_text(errno)}): it was built for "
                f"the running kernel {running}, so it conflicts with the livepatches already "
                "loaded or patches something this kernel lacks (the kernel log says which)."
            )
        else:
            built = f"built for {built_for}" if built_for else "built for another kernel"
            hint = (
                ", or it conflicts with the livepatches already loaded (the kernel log says which)"
                if errno == errno_codes.EINVAL
                else ""
            )
            message = (
                f"The kernel refused module {module} ({errno_text(errno)}): it was {built}, "
                f"not for the running kernel {running}{hint}; use the patch made for {running}."
            )
        super().__init__(message, errno=errno)
        self.module = module
        self.running = running
        self.built_for = built_for


class BuiltForAnotherKernel(WrongKernel):
    """Refused by us, before any load: the module's vermagic names another kernel."""

    def __init__(self, module: str, *, running: str, built_for: str | None) -> None:
        built = f"built for kernel {built_for}" if built_for else "built without a vermagic"
        KernelError.__init__(
            self,
            f"Module {module} was {built}, not for the running kernel {running}, so it was "
            f"not loaded; use the patch made for {running}.",
        )
        self.module = module
        self.running = running
        self.built_for = built_for


class NotPermitted(KernelError):
    code = "not-permitted"

    def __init__(self, action: str, *, errno: int) -> None:
        super().__init__(
            f"The kernel did not permit {action} ({errno_text(errno)}); run as root with "
            "CAP_SYS_MODULE, or, inside the snap, connect its kernel-module-control plug "
            "(sudo snap connect livepatch:kernel-module-control).",
            errno=errno,
        )


class OutOfMemory(KernelError):
    code = "out-of-memory"

    def __init__(self, module: str, *, errno: int) -> None:
        super().__init__(
            f"The kernel ran out of memory loading module {module}; free some memory and "
            "try again.",
            errno=errno,
        )


class ModuleLoadFailed(KernelError):
    """The kernel refused a module for a reason with no more specific class."""

    code = "module-load-failed"

    def __init__(self, module: str, *, errno: int) -> None:
        super().__init__(
            f"The kernel refused to load module {module} ({errno_text(errno)}); the "
            "kernel log (dmesg) says why.",
            errno=errno,
        )
        self.module = module


class InvalidModule(KernelError):
    code = "invalid-module"

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path} is not a usable kernel module: {problem}.")


class NotALivepatch(KernelError):
    code = "not-a-livepatch"

    def __init__(self, module: str) -> None:
        super().__init__(
            f"Module {module} is not a livepatch (its modinfo lacks livepatch=Y), so it was "
            "not loaded; use a livepatch module."
        )


class TransitionBusy(KernelError):
    code = "transition-busy"

    def __init__(self, busy_patch: str, *, errno: int | None = None) -> None:
        super().__init__(
            f"Livepatch {busy_patch} is still in transition and the kernel allows only one "
            "at a time; wait for it to finish (or disable it) and try again.",
            errno=errno,
        )
        self.busy_patch = busy_patch


class StalledTask(NamedTuple):
    """A task (thread) that has not yet switched to the transition's target state."""

    pid: int
    comm: str


class TransitionStalled(KernelError):
    """A transition did not finish in time; the patch is left in transition.

    ``state`` is the patch as the kernel shows it now and ``tasks`` the tasks
    still running the old code (empty with ``tasks_known`` False when
    /proc/PID/patch_state cannot be read). The caller decides what next:
    wait longer, disable the patch to reverse the transition, or force it.
    """

    code = "transition-stalled"

    def __init__(
        self,
        patch: str,
        *,
        target: str,
        timeout: float,
        tasks: Sequence[StalledTask],
        tasks_known: bool,
        state: LoadedPatch | None,
    ) -> None:
        if tasks:
            shown = ", ".join(f"{task.comm} (pid {task.pid})" for task in tasks[:5])
            more = f" and {len(tasks) - 5} more" if len(tasks) > 5 else ""
            blockers = f"tasks still on the old code: {shown}{more}"
        elif tasks_known:
            blockers = "no task reports the old code, so it should finish shortly"
        else:
            blockers = "the blocking tasks cannot be read from /proc/PID/patch_state here"
        super().__init__(
            f"The {target} transition of livepatch {patch} did not finish within "
            f"{timeout:g} s and is still in progress ({blockers}); wait, or disable the "
            "patch to reverse it."
        )
        self.patch = patch
        self.target = target
        self.tasks = list(tasks)
        self.tasks_known = tasks_known
        self.state = state


class PatchStillEnabled(KernelError):
    code = "patch-enabled"

    def __init__(self, patch: str) -> None:
        super().__init__(
            f"Livepatch {patch} is still enabled, so its module cannot be unloaded; "
            "disable it first."
        )


class ModuleInUse(KernelError):
    code = "module-in-use"

    def __init__(self, module: str, *, errno: int, refcount: int | None) -> None:
        held = f" (reference count {refcount})" if refcount is not None else ""
        super().__init__(
            f"Module {module} is still in use{held} and cannot be unloaded; a forced "
            "livepatch stays loaded until reboot, otherwise try again shortly.",
            errno=errno,
        )
        self.module = module


class UnsupportedArchitecture(KernelError):
    code = "unsupported-architecture"

    def __init__(self, machine: str) -> None:
        super().__init__(
            f"Loading modules is not implemented for the {machine} architecture; only "
            "x86_64 and aarch64 are supported."
        )
