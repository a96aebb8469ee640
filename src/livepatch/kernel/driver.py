"""Loading, waiting for, disabling and unloading livepatches on the running kernel.

Every operation is idempotent and returns a result describing the state it
left; when it cannot finish (a transition that does not complete in time),
the exception carries the exact state instead, and nothing is reverted or
forced behind the caller's back.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from livepatch.kernel.capabilities import LOCKDOWN, MODULES_DISABLED, parse_lockdown
from livepatch.kernel.decisions import (
    LoadContext,
    load_error,
    patch_in_transition,
    replaced_patches,
    unload_error,
)
from livepatch.kernel.errors import (
    AccessDenied,
    InvalidModule,
    KernelError,
    LivepatchUnsupported,
    ModulesDisabled,
    NotALivepatch,
    PatchStillEnabled,
    TransitionBusy,
    TransitionStalled,
    errno_text,
)
from livepatch.kernel.files import KernelFiles
from livepatch.kernel.identity import read_identity
from livepatch.kernel.modinfo import parse_modinfo
from livepatch.kernel.results import DisableResult, LoadResult, UnloadResult
from livepatch.kernel.syscalls import LinuxModuleSyscalls, ModuleSyscalls
from livepatch.kernel.sysfs import LivepatchSysfs, LoadedPatch
from livepatch.kernel.tasks import read_task_states, stalled_tasks

log = logging.getLogger(__name__)

# How long a forced transition may take to settle, and how long to retry
# unloading a module whose reference the kernel drops asynchronously.
FORCE_GRACE_SECONDS = 5.0
UNLOAD_RETRY_SECONDS = 10.0


class LivepatchDriver:
    def __init__(
        self,
        root: Path = Path("/"),
        *,
        syscalls: ModuleSyscalls | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        poll_interval: float = 0.05,
    ) -> None:
        self.root = root
        self.files = KernelFiles(root)
        self.sysfs = LivepatchSysfs(self.files)
        self.syscalls: ModuleSyscalls = syscalls or LinuxModuleSyscalls()
        self._clock = clock
        self._sleep = sleep
        self._poll_interval = poll_interval

    def list_patches(self) -> list[LoadedPatch]:
        return self.sysfs.all()

    def patch(self, name: str) -> LoadedPatch | None:
        return self.sysfs.read(name)

    def load(
        self,
        module: Path,
        *,
        params: str = "",
        timeout: float = 60.0,
        signal_interval: float = 5.0,
        force: bool = False,
    ) -> LoadResult:
        """Load livepatch `module` and wait for its transition to complete.

        Refuses before any system call when livepatching is unsupported or
        module loading is disabled. A cumulative (replace) patch's transition
        disables the patches it replaces; their modules are then unloaded.
        Raises TransitionStalled, with the patch left in transition, when
        `timeout` passes and `force` is False.
        """
        started = self._clock()
        data = _read_module(module)
        info = parse_modinfo(data, label=str(module))
        name = info.name or module.name.split(".", 1)[0].replace("-", "_")
        if not info.is_livepatch:
            raise NotALivepatch(name)
        if not self.sysfs.supported():
            raise LivepatchUnsupported()
        if self._modules_disabled():
            raise ModulesDisabled()

        existing = self.sysfs.read(name)
        if existing is not None and existing.state == "unpatching":
            raise TransitionBusy(name)
        if existing is not None:
            outcome: Literal["applied", "already-applied"] = (
                "already-applied" if existing.state == "applied" else "applied"
            )
            patch, forced = self._await(name, timeout, signal_interval, force)
            return LoadResult(
                name, outcome, patch or existing, forced=forced, duration=self._since(started)
            )

        unloaded: list[str] = []
        if self.sysfs.module_loaded(name):
            # Loaded earlier, then disabled or replaced: an inert copy that
            # would make finit_module fail with EEXIST.
            self._unload_module(name)
            unloaded.append(name)

        before = self.sysfs.all()
        busy = patch_in_transition(before, other_than=name)
        if busy is not None:
            raise TransitionBusy(busy)
        self._finit(module, params, name, info.built_for_release, busy)
        log.info("loaded module %s, waiting for its transition", name)
        patch, forced = self._await(name, timeout, signal_interval, force)
        if patch is None:
            raise KernelError(
                f"Livepatch {name} was loaded but disappeared from /sys/kernel/livepatch "
                "before its transition completed; check the kernel log and load it again."
            )

        replaced = replaced_patches(before, self.sysfs.all(), new=name)
        left_loaded = []
        for old in replaced:
            try:
                self._unload_module(old)
                unloaded.append(old)
            except KernelError as error:
                log.warning("replaced livepatch %s stays loaded: %s", old, error)
                left_loaded.append(old)
        return LoadResult(
            name,
            "applied",
            patch,
            replaced=tuple(replaced),
            unloaded=tuple(unloaded),
            left_loaded=tuple(left_loaded),
            forced=forced,
            duration=self._since(started),
        )

    def disable(
        self,
        name: str,
        *,
        timeout: float = 60.0,
        signal_interval: float = 5.0,
        force: bool = False,
    ) -> DisableResult:
        """Disable livepatch `name` (reversing it if still patching) and wait for it."""
        started = self._clock()
        patch = self.sysfs.read(name)
        if patch is None or patch.state == "disabled":
            loaded = self.sysfs.module_loaded(name)
            return DisableResult(
                name,
                "already-disabled" if loaded else "not-loaded",
                loaded,
                duration=self._since(started),
            )
        if patch.state == "applied":
            busy = patch_in_transition(self.sysfs.all(), other_than=name)
            if busy is not None:
                raise TransitionBusy(busy)
        if patch.enabled:
            self._write(lambda: self.sysfs.set_enabled(name, False), f"disabling {name}")
        _, forced = self._await(name, timeout, signal_interval, force)
        return DisableResult(
            name,
            "disabled",
            self.sysfs.module_loaded(name),
            forced=forced,
            duration=self._since(started),
        )

    def unload(self, name: str) -> UnloadResult:
        """Unload the module of disabled livepatch `name`."""
        started = self._clock()
        patch = self.sysfs.read(name)
        if patch is not None and patch.enabled:
            raise PatchStillEnabled(name)
        if patch is not None and patch.transition:
            raise TransitionBusy(name)
        if not self.sysfs.module_loaded(name):
            return UnloadResult(name, "not-loaded", self._since(started))
        self._unload_module(name)
        return UnloadResult(name, "unloaded", self._since(started))

    def wait(
        self, name: str, *, timeout: float, signal_interval: float = 5.0, force: bool = False
    ) -> LoadedPatch | None:
        """Wait for `name`'s transition; the patch after it (None once it is freed)."""
        patch, _ = self._await(name, timeout, signal_interval, force)
        return patch

    def _finit(
        self, module: Path, params: str, name: str, built_for: str | None, busy: str | None
    ) -> None:
        fd = os.open(module, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.syscalls.finit_module(fd, params, 0)
        except OSError as error:
            code = error.errno or errno.EIO
            context = LoadContext(
                module=name,
                running_release=read_identity(self.root).release,
                built_for=built_for,
                lockdown_mode=self._lockdown_mode(),
                modules_disabled=self._modules_disabled(),
                busy_patch=busy,
            )
            raise load_error(code, context) from error
        finally:
            os.close(fd)

    def _await(
        self, name: str, timeout: float, signal_interval: float, force: bool
    ) -> tuple[LoadedPatch | None, bool]:
        """Poll until `name` leaves transition; signal, force or raise on the way."""
        now = self._clock()
        deadline = now + timeout
        next_signal = now + signal_interval
        forced = False
        while True:
            patch = self.sysfs.read(name)
            if patch is None or not patch.transition:
                return patch, forced
            now = self._clock()
            if now >= deadline:
                if force and not forced:
                    log.warning("forcing the transition of livepatch %s", name)
                    self._write(lambda: self.sysfs.force(name), f"forcing {name}")
                    forced = True
                    deadline = now + FORCE_GRACE_SECONDS
                    continue
                raise self._stalled(name, patch, timeout)
            if now >= next_signal:
                self.sysfs.signal(name)
                next_signal = now + signal_interval
            self._sleep(self._poll_interval)

    def _stalled(self, name: str, patch: LoadedPatch, timeout: float) -> TransitionStalled:
        states = read_task_states(self.files)
        tasks = stalled_tasks(states or [], 1 if patch.enabled else 0)
        current = self.sysfs.read(name)
        return TransitionStalled(
            name,
            target=patch.state,
            timeout=timeout,
            tasks=tasks,
            tasks_known=states is not None,
            state=current if current is not None else patch,
        )

    def _unload_module(self, name: str) -> None:
        """delete_module(O_NONBLOCK), retrying while the kernel still holds a reference."""
        if not self.sysfs.module_is_livepatch(name):
            raise NotALivepatch(name)
        deadline = self._clock() + UNLOAD_RETRY_SECONDS
        while True:
            try:
                self.syscalls.delete_module(name, os.O_NONBLOCK)
                return
            except OSError as error:
                code = error.errno or errno.EIO
                if code == errno.ENOENT:
                    return
                if code != errno.EWOULDBLOCK or self._clock() >= deadline:
                    raise unload_error(
                        code,
                        module=name,
                        refcount=self.sysfs.module_refcount(name),
                        modules_disabled=self._modules_disabled(),
                    ) from error
            self._sleep(self._poll_interval)

    def _write(self, action: Callable[[], None], what: str) -> None:
        try:
            action()
        except AccessDenied:
            raise
        except OSError as error:
            code = error.errno or errno.EIO
            raise KernelError(
                f"The kernel refused {what} ({errno_text(code)}); check the kernel log.",
                errno=code,
            ) from error

    def _modules_disabled(self) -> bool | None:
        try:
            value = self.files.read_text(MODULES_DISABLED)
        except AccessDenied:
            return None
        return None if value is None else value.strip() == "1"

    def _lockdown_mode(self) -> str | None:
        try:
            text = self.files.read_text(LOCKDOWN)
        except AccessDenied:
            return None
        return None if text is None else parse_lockdown(text)

    def _since(self, started: float) -> float:
        return self._clock() - started


def _read_module(module: Path) -> bytes:
    try:
        return module.read_bytes()
    except FileNotFoundError as error:
        raise InvalidModule(str(module), "the file does not exist") from error
    except IsADirectoryError as error:
        raise InvalidModule(str(module), "it is a directory") from error
