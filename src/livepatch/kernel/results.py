"""What each driver operation leaves behind, reported exactly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from livepatch.kernel.sysfs import LoadedPatch


@dataclass(frozen=True)
class LoadResult:
    """The outcome of loading a livepatch module.

    ``outcome`` is "applied" when this call loaded it and "already-applied"
    when it was loaded and enabled before. ``replaced`` names the patches its
    atomic replace disabled, ``unloaded`` the modules this call removed (the
    replaced ones, or a stale disabled copy of this one) and ``left_loaded``
    the replaced modules that could not be removed (inert, but still loaded).
    ``forced`` means the transition was forced: the module can then never be
    unloaded until reboot.
    """

    name: str
    outcome: Literal["applied", "already-applied"]
    patch: LoadedPatch
    replaced: tuple[str, ...] = ()
    unloaded: tuple[str, ...] = ()
    left_loaded: tuple[str, ...] = ()
    forced: bool = False
    duration: float = 0.0


@dataclass(frozen=True)
class DisableResult:
    """The outcome of disabling a livepatch; ``module_loaded`` tells if unload is next."""

    name: str
    outcome: Literal["disabled", "already-disabled", "not-loaded"]
    module_loaded: bool
    forced: bool = False
    duration: float = 0.0


@dataclass(frozen=True)
class UnloadResult:
    name: str
    outcome: Literal["unloaded", "not-loaded"]
    duration: float = 0.0
