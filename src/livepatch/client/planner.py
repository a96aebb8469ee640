"""Which patch to apply: a pure function of metadata, kernel, machine and what is loaded.

Rules, in order:
- only cumulative patches published for this exact kernel key count; a
  patch for another kernel is never a candidate;
- none at all means the kernel needs an upgrade to receive fixes; how it
  stands (``Supported`` in status) is `kernelsupport.published_support`,
  the rule the patch service's views and kernel-support API use;
- among those whose rollout admits this machine (halted ones admit nobody),
  the newest version is the candidate;
- a revoked patch, or one that crashed this machine (`blocked`), is never a
  candidate;
- a loaded patch at least as new as the candidate stays: never downgrade,
  never reload what is loaded;
- except a loaded patch that was revoked: go back to the newest candidate by
  atomic replace (``Revert``, older or not), or remove it when there is none
  (``Remove``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from livepatch.client.patches import PatchInfo, version_key
from livepatch.kernelsupport import Support, published_support
from livepatch.rollout import Tier, admits


@dataclass(frozen=True)
class Apply:
    patch: PatchInfo
    replaces: PatchInfo | None = None


@dataclass(frozen=True)
class UpToDate:
    patch: PatchInfo


@dataclass(frozen=True)
class NothingToApply:
    """Patches exist for this kernel but none admits this machine yet."""


@dataclass(frozen=True)
class KernelUpgradeRequired:
    """No patch is published for this kernel."""

    support: Support = Support.KERNEL_UPGRADE_REQUIRED
    """What the published kernels say of this one (unsupported, upgrade required…)."""


@dataclass(frozen=True)
class Revert:
    """Leave revoked `revoked` for `patch` (atomic replace, possibly an older version)."""

    patch: PatchInfo
    revoked: PatchInfo


@dataclass(frozen=True)
class Remove:
    """Disable and unload revoked `revoked`: no other patch for this kernel may replace it."""

    revoked: PatchInfo


Plan = Apply | UpToDate | NothingToApply | KernelUpgradeRequired | Revert | Remove


def newest(patches: Sequence[PatchInfo]) -> PatchInfo | None:
    return max(patches, key=lambda p: (version_key(p.version), p.patch_id), default=None)


def plan(
    patches: Sequence[PatchInfo],
    *,
    kernel_key: str,
    machine_id: str,
    tier: Tier,
    loaded_modules: Collection[str],
    blocked: Collection[str] = (),
) -> Plan:
    """Decide what to do; `loaded_modules` are the enabled livepatch modules in the kernel,
    `blocked` ids of patches never to load again (they crashed this machine)."""
    mine = [p for p in patches if p.cumulative and kernel_key in p.kernels]
    if not mine:
        published = (k for p in patches if p.cumulative for k in p.kernels)
        return KernelUpgradeRequired(published_support(kernel_key, published))
    current = newest([p for p in mine if p.module_name in loaded_modules])
    candidate = newest(
        [
            p
            for p in mine
            if p.revoked is None
            and p.patch_id not in blocked
            and admits(p.rollout, machine_id, p.patch_id, tier)
        ]
    )
    if current is not None and current.revoked is not None:
        return Remove(current) if candidate is None else Revert(candidate, revoked=current)
    if candidate is None:
        return UpToDate(current) if current else NothingToApply()
    if current is not None and version_key(current.version) >= version_key(candidate.version):
        return UpToDate(current)
    return Apply(candidate, replaces=current)
