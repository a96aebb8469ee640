"""Rollout membership: which machines a patch's current stage admits.

Pure functions shared by the patch service (to count who was told to apply)
and the client (to decide for itself from signed metadata, even through a
mirror). Membership comes from a stable hash of machine id and patch id, so
a machine keeps its bucket for a patch across check-ins, and the buckets of
different patches are independent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum


class Stage(StrEnum):
    CANARY = "canary"
    MODERATE = "moderate"
    ALL = "all"


class Tier(StrEnum):
    COMMUNITY = "community"
    STABLE = "stable"


STAGE_ORDER: tuple[Stage, ...] = (Stage.CANARY, Stage.MODERATE, Stage.ALL)

BUCKETS = 10_000
"""Buckets per patch; percentages are honoured to a hundredth of a percent."""


@dataclass(frozen=True)
class RolloutState:
    """The rollout fields signed into a patch's metadata."""

    stage: Stage
    percentage: float
    halted: bool = False


def bucket(machine_id: str, patch_id: str) -> int:
    """The machine's stable bucket in [0, BUCKETS) for one patch."""
    digest = hashlib.sha256(f"{machine_id}\0{patch_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def admits(state: RolloutState, machine_id: str, patch_id: str, tier: Tier) -> bool:
    """Whether a machine on `tier` may apply the patch in its current state.

    A halted patch admits nobody. Stable-tier machines never act as canaries.
    At stage `all` everyone is admitted; otherwise the machine's bucket must
    fall under the stage's percentage.
    """
    if state.halted:
        return False
    if state.stage is Stage.ALL:
        return True
    if state.stage is Stage.CANARY and tier is Tier.STABLE:
        return False
    return bucket(machine_id, patch_id) < round(state.percentage * BUCKETS / 100)
