"""A KernelPort whose "kernel" lives in a directory, so it outlives a killed daemon.

The loaded modules are one JSON file replaced atomically, as the kernel's own
view changes atomically; loading pauses before and after (finit_module, the
transition), which widens the window in which a ``kill -9`` lands mid-apply.
A load replaces all other patches (cumulative atomic replace).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Mapping
from pathlib import Path

from livepatch.client.status import KernelFacts
from livepatch.client.transitions import ModuleStatus

KERNEL = "6.1.0-56-amd64"


class FileKernel:
    def __init__(self, root: Path, *, max_pause: float = 0.05, key: str = KERNEL) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.file = root / "livepatch.json"
        self.max_pause = max_pause
        self.key = key

    def _read(self) -> dict[str, bool]:
        try:
            data: dict[str, bool] = json.loads(self.file.read_text())
        except FileNotFoundError:
            return {}
        return data

    def _write(self, modules: dict[str, bool]) -> None:
        """The kernel's view changes atomically, whatever happens to the caller."""
        staging = self.root / f".livepatch.{os.getpid()}"
        staging.write_text(json.dumps(modules))
        os.rename(staging, self.file)

    def identity(self) -> KernelFacts:
        return KernelFacts(self.key, self.key, "amd64")

    def unsupported_reason(self) -> str | None:
        return None

    def check_loadable(self) -> None:
        return None

    def loaded(self) -> Mapping[str, ModuleStatus]:
        return {
            name: ModuleStatus(enabled=enabled, transition=False)
            for name, enabled in self._read().items()
        }

    def load(self, module: Path) -> None:
        """finit_module, then a transition that atomically replaces the older patches."""
        name = module.name.removesuffix(".ko")
        time.sleep(random.uniform(0, self.max_pause))
        self._write({name: True})
        time.sleep(random.uniform(0, self.max_pause))

    def disable(self, name: str) -> None:
        modules = self._read()
        modules[name] = False
        self._write(modules)

    def unload(self, name: str) -> None:
        modules = self._read()
        modules.pop(name, None)
        self._write(modules)

    def taint(self) -> int:
        return 32768

    def boot_id(self) -> str:
        """One boot for the kernel's whole life: a killed daemon is not a reboot."""
        return "file-kernel-boot"

    def log_seq(self) -> int:
        return -1

    def log_since(self, seq: int) -> list[str]:
        return []

    def functions(self, name: str) -> tuple[str, ...]:
        return ()

    def check_module(self, data: bytes) -> None:
        return None
