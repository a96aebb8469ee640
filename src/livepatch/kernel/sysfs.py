"""The livepatch sysfs interface (Documentation/ABI/testing/sysfs-kernel-livepatch).

/sys/kernel/livepatch/<patch>/{enabled,transition,force,replace,signal} and
<patch>/<object>/patched. Attributes that a kernel version lacks (``replace``
before 6.2ish, ``signal`` after 5.x, ``patched`` before 6.1) read as None.
Since Linux 5.1 a patch's directory disappears once it is disabled or
replaced; its module stays loaded until it is unloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from livepatch.kernel.files import KernelFiles

LIVEPATCH_DIR = "sys/kernel/livepatch"
_ATTRIBUTES = frozenset({"enabled", "transition", "force", "replace", "signal", "stack_order"})

PatchStateName = Literal["applied", "patching", "unpatching", "disabled"]


@dataclass(frozen=True)
class PatchedObject:
    """A kernel object (``vmlinux`` or a module) the patch changes functions in."""

    name: str
    patched: bool | None


@dataclass(frozen=True)
class LoadedPatch:
    name: str
    enabled: bool
    transition: bool
    replace: bool | None
    objects: tuple[PatchedObject, ...]

    @property
    def state(self) -> PatchStateName:
        if self.transition:
            return "patching" if self.enabled else "unpatching"
        return "applied" if self.enabled else "disabled"


def _flag(text: str | None) -> bool | None:
    return None if text is None else text.strip() == "1"


class LivepatchSysfs:
    def __init__(self, files: KernelFiles) -> None:
        self.files = files

    def supported(self) -> bool:
        return self.files.is_dir(LIVEPATCH_DIR)

    def names(self) -> list[str]:
        return self.files.list_dir(LIVEPATCH_DIR)

    def read(self, name: str) -> LoadedPatch | None:
        """The patch as the kernel shows it now, None when it has no directory."""
        base = f"{LIVEPATCH_DIR}/{name}"
        enabled = _flag(self.files.read_text(f"{base}/enabled"))
        transition = _flag(self.files.read_text(f"{base}/transition"))
        if enabled is None or transition is None:
            return None
        objects = tuple(
            PatchedObject(entry, _flag(self.files.read_text(f"{base}/{entry}/patched")))
            for entry in self.files.list_dir(base)
            if entry not in _ATTRIBUTES and self.files.is_dir(f"{base}/{entry}")
        )
        return LoadedPatch(
            name=name,
            enabled=enabled,
            transition=transition,
            replace=_flag(self.files.read_text(f"{base}/replace")),
            objects=objects,
        )

    def all(self) -> list[LoadedPatch]:
        patches = (self.read(name) for name in self.names())
        return [patch for patch in patches if patch is not None]

    def set_enabled(self, name: str, enabled: bool) -> None:
        self.files.write_text(f"{LIVEPATCH_DIR}/{name}/enabled", "1" if enabled else "0")

    def force(self, name: str) -> None:
        self.files.write_text(f"{LIVEPATCH_DIR}/{name}/force", "1")

    def signal(self, name: str) -> bool:
        """Ask the kernel to signal tasks blocking the transition.

        Returns False when the kernel has no ``signal`` attribute: since
        Linux 5.x it sends those signals by itself every 15 seconds.
        """
        relative = f"{LIVEPATCH_DIR}/{name}/signal"
        if not self.files.path(relative).exists():
            return False
        self.files.write_text(relative, "1")
        return True

    def module_loaded(self, name: str) -> bool:
        return self.files.is_dir(f"sys/module/{name}")

    def module_is_livepatch(self, name: str) -> bool:
        """Whether loaded module `name` carries the livepatch taint (K)."""
        return "K" in (self.files.read_text(f"sys/module/{name}/taint") or "")

    def module_refcount(self, name: str) -> int | None:
        text = self.files.read_text(f"sys/module/{name}/refcnt")
        return int(text) if text and text.strip().isdigit() else None
