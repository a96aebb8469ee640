"""The rollout membership formula of docs/CONTRACTS.md, pinned by fixed vectors.

The expected buckets were computed once by hand from the documented formula
(first 8 bytes of SHA-256 over ``machine_id + "\\0" + patch_id``, big-endian,
modulo 10 000), never with ``livepatch.rollout``: changing the byte order,
the separator or the threshold comparison fails here.
"""

from __future__ import annotations

import pytest

from livepatch.rollout import RolloutState, Stage, Tier, admits, bucket


@pytest.mark.parametrize(
    ("machine_id", "patch_id", "expected"),
    [
        ("machine-1", "lp-6.1.0-56-amd64-1", 6053),  # little-endian would give 4703
        ("0123456789abcdef0123456789abcdef", "lp-6.1.0-56-amd64-2", 5096),  # LE: 4606
        ("a", "b", 2387),  # LE: 6297
        ("edge-17486", "lp-edge-1", 499),
        ("edge-367", "lp-edge-1", 500),
        ("edge-3277", "lp-edge-1", 2999),
        ("edge-1525", "lp-edge-1", 3000),
    ],
)
def test_bucket_fixed_vectors(machine_id: str, patch_id: str, expected: int) -> None:
    assert bucket(machine_id, patch_id) == expected


@pytest.mark.parametrize(
    ("machine_id", "stage", "percentage", "admitted"),
    [
        ("edge-17486", Stage.CANARY, 5.0, True),  # bucket 499 < 500
        ("edge-367", Stage.CANARY, 5.0, False),  # bucket 500 is exactly on the threshold
        ("edge-3277", Stage.MODERATE, 30.0, True),  # 2999 < 3000
        ("edge-1525", Stage.MODERATE, 30.0, False),  # 3000 on the threshold
        ("edge-1525", Stage.ALL, 100.0, True),
    ],
)
def test_machines_exactly_on_a_stage_threshold(
    machine_id: str, stage: Stage, percentage: float, admitted: bool
) -> None:
    state = RolloutState(stage, percentage)
    assert admits(state, machine_id, "lp-edge-1", Tier.COMMUNITY) is admitted


def test_stable_machines_are_never_canaries_and_a_halt_admits_nobody() -> None:
    assert not admits(RolloutState(Stage.CANARY, 100.0), "edge-17486", "lp-edge-1", Tier.STABLE)
    assert admits(RolloutState(Stage.MODERATE, 5.0), "edge-17486", "lp-edge-1", Tier.STABLE)
    assert not admits(RolloutState(Stage.ALL, 100.0, halted=True), "a", "b", Tier.COMMUNITY)
