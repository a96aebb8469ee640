"""The KernelPort backed by ``livepatch.kernel`` (the only code touching the kernel).

``livepatch.kernel`` is imported on first use, so building the port costs
nothing on paths that never reach the kernel.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from livepatch.client.status import KernelFacts
from livepatch.client.transitions import ModuleStatus
from livepatch.errors import LivepatchError

if TYPE_CHECKING:
    from livepatch.kernel import LivepatchDriver, ModuleSyscalls

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadTimings:
    timeout: float = 60.0
    """How long a transition may take before it counts as stalled."""
    signal_interval: float = 5.0
    """How often stalled tasks are signalled to move them along."""
    poll_interval: float = 0.01
    """How often the transition is checked: the kernel finishes one at its own pace
    (at once, or on its retries a second apart); noticing it sooner is cheap."""


class KernelAdapter:
    def __init__(
        self,
        root: Path = Path("/"),
        *,
        syscalls: ModuleSyscalls | None = None,
        timings: LoadTimings = LoadTimings(),
        driver: LivepatchDriver | None = None,
    ) -> None:
        self.root = root
        self.timings = timings
        self._syscalls = syscalls
        self._driver = driver

    @property
    def driver(self) -> LivepatchDriver:
        if self._driver is None:
            from livepatch.kernel import LivepatchDriver

            self._driver = LivepatchDriver(
                self.root, syscalls=self._syscalls, poll_interval=self.timings.poll_interval
            )
        return self._driver

    def identity(self) -> KernelFacts:
        from livepatch.kernel import read_identity

        identity = read_identity(self.root)
        return KernelFacts(identity.release, identity.key, identity.architecture)

    def unsupported_reason(self) -> str | None:
        from livepatch.kernel import read_capabilities

        check = read_capabilities(self.root).livepatch
        return check.reason if check.ok is False else None

    def check_loadable(self) -> None:
        from livepatch.kernel import ModulesDisabled, read_capabilities

        if read_capabilities(self.root).modules_disabled.ok is False:
            raise ModulesDisabled()

    def loaded(self) -> Mapping[str, ModuleStatus]:
        return {
            patch.name: ModuleStatus(patch.enabled, patch.transition)
            for patch in self.driver.list_patches()
        }

    def load(self, module: Path) -> None:
        self.driver.load(
            module, timeout=self.timings.timeout, signal_interval=self.timings.signal_interval
        )

    def disable(self, name: str) -> None:
        self.driver.disable(
            name, timeout=self.timings.timeout, signal_interval=self.timings.signal_interval
        )

    def unload(self, name: str) -> None:
        self.driver.unload(name)

    def taint(self) -> int:
        from livepatch.kernel import read_capabilities

        return read_capabilities(self.root).taint_value or 0

    def boot_id(self) -> str:
        from livepatch.kernel.kmsg import boot_id

        try:
            return boot_id(self.root)
        except OSError:
            return ""

    def log_seq(self) -> int:
        from livepatch.kernel.kmsg import last_seq

        try:
            return last_seq(self.root)
        except OSError:
            return -1

    def log_since(self, seq: int) -> list[str] | None:
        """/dev/kmsg after record `seq`; when it cannot be opened (a snap's device cgroup
        refuses it), the whole buffer through syslog(2): a report naming the patch's
        module was logged after it was loaded, whatever else the buffer holds."""
        from livepatch.kernel.kmsg import read_records, read_ring_buffer

        try:
            return [record.text for record in read_records(self.root, after=seq)]
        except OSError as error:
            refused = error
        if self.root == Path("/"):
            try:
                return read_ring_buffer()
            except OSError as error:
                log.warning("the kernel log is not readable: %s; %s", refused, error)
                return None
        log.warning("the kernel log is not readable: %s", refused)
        return None

    def functions(self, name: str) -> tuple[str, ...]:
        files = self.driver.files
        base = f"sys/kernel/livepatch/{name}"
        found: set[str] = set()
        try:
            for obj in files.list_dir(base):
                if files.is_dir(f"{base}/{obj}"):
                    entries = files.list_dir(f"{base}/{obj}")
                    found |= {entry.split(",", 1)[0] for entry in entries if "," in entry}
        except (LivepatchError, OSError):
            return ()
        return tuple(sorted(found))

    def check_module(self, data: bytes) -> None:
        from livepatch.kernel import check_built_for

        check_built_for(data, self.identity().release)
