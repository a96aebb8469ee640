"""The rollout engine's rules, with made-up times and counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from livepatch.rollout import RolloutState, Stage
from livepatch.server.config import RolloutPolicy
from livepatch.server.engine import Action, Outcomes, PatchRollout, decide, promoted
from livepatch.server.reports import tally

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = RolloutPolicy()


def rollout(
    stage: Stage = Stage.CANARY,
    *,
    halted: bool = False,
    withdrawn: bool = False,
    started: datetime = T0,
    policy: RolloutPolicy = POLICY,
) -> PatchRollout:
    pct = {Stage.CANARY: 5.0, Stage.MODERATE: 30.0, Stage.ALL: 100.0}[stage]
    return PatchRollout(RolloutState(stage, pct, halted), started, policy, withdrawn)


def test_waits_during_the_canary_soak() -> None:
    decision = decide(rollout(), Outcomes(applied=100), T0 + timedelta(hours=23, minutes=59))
    assert decision.action is Action.NOTHING
    assert "soaking in canary" in decision.reason
    assert decision.state == rollout().state


def test_promotes_canary_to_moderate_after_the_soak_with_healthy_reports() -> None:
    decision = decide(rollout(), Outcomes(applied=40), T0 + timedelta(hours=24))
    assert decision.action is Action.PROMOTE
    assert decision.state == RolloutState(Stage.MODERATE, 30.0, False)


def test_promotes_moderate_to_all_after_its_own_soak() -> None:
    moderate = rollout(Stage.MODERATE)
    assert decide(moderate, Outcomes(), T0 + timedelta(hours=47)).action is Action.NOTHING
    decision = decide(moderate, Outcomes(applied=5), T0 + timedelta(hours=48))
    assert decision.state == RolloutState(Stage.ALL, 100.0, False)


def test_a_small_fleet_with_no_failures_moves_on_with_minimum_applied() -> None:
    decision = decide(rollout(), Outcomes(applied=5), T0 + timedelta(days=2))
    assert decision.action is Action.PROMOTE


@pytest.mark.parametrize(
    ("outcomes", "missing"),
    [(Outcomes(), 5), (Outcomes(applied=2), 3), (Outcomes(applied=4, pending=30), 1)],
)
def test_a_stage_without_enough_healthy_reports_waits_and_says_so(
    outcomes: Outcomes, missing: int
) -> None:
    decision = decide(rollout(), outcomes, T0 + timedelta(days=30))
    assert decision.action is Action.NOTHING
    assert decision.reason == f"waiting for {missing} more healthy reports in canary"


def test_a_stage_with_no_machines_never_promotes() -> None:
    for days in (1, 10, 1000):
        assert decide(rollout(), Outcomes(), T0 + timedelta(days=days)).action is Action.NOTHING


def test_per_patch_minimum_applied() -> None:
    policy = RolloutPolicy(minimum_applied=1)
    decision = decide(rollout(policy=policy), Outcomes(applied=1), T0 + timedelta(days=2))
    assert decision.action is Action.PROMOTE


def test_unhealthy_and_crashed_count_as_failures_for_halting() -> None:
    # reports.tally turns rows into Outcomes; unhealthy and crashed are failures.
    outcomes = tally(
        [
            ("applied", "healthy", 1, 19),
            ("applied", "unhealthy", 1, 1),
            ("crashed", None, 1, 1),
            ("applied", None, 1, 7),
        ]
    )
    assert (outcomes.applied, outcomes.failed, outcomes.pending) == (19, 2, 7)
    assert decide(rollout(), outcomes, T0).action is Action.HALT


def test_minimum_tokens_for_promotion_and_halt() -> None:
    policy = RolloutPolicy(minimum_tokens=2)
    one_token = Outcomes(applied=50, healthy_tokens=1)
    decision = decide(rollout(policy=policy), one_token, T0 + timedelta(days=2))
    assert decision.action is Action.NOTHING
    assert "from 2 different tokens" in decision.reason
    two_tokens = Outcomes(applied=50, healthy_tokens=2)
    assert decide(rollout(policy=policy), two_tokens, T0 + timedelta(days=2)).action is (
        Action.PROMOTE
    )
    forged = Outcomes(applied=10, failed=10, healthy_tokens=3, failed_tokens=1)
    assert decide(rollout(policy=policy), forged, T0).action is Action.NOTHING


def test_a_failure_in_a_small_sample_holds_the_patch_without_halting() -> None:
    decision = decide(rollout(), Outcomes(applied=18, failed=1), T0 + timedelta(days=5))
    assert decision.action is Action.NOTHING
    assert "waiting for 20 reports" in decision.reason


@pytest.mark.parametrize(
    ("applied", "failed", "action"),
    [
        (98, 2, Action.PROMOTE),  # exactly 2%: not over the threshold
        (97, 3, Action.HALT),  # 3%
        (19, 1, Action.HALT),  # 5% over exactly the minimum sample
        (18, 1, Action.NOTHING),  # 19 reports: under the minimum sample
    ],
)
def test_halt_threshold_and_minimum_sample(applied: int, failed: int, action: Action) -> None:
    decision = decide(rollout(), Outcomes(applied, failed), T0 + timedelta(hours=25))
    assert decision.action is action


def test_halts_before_the_soak_ends() -> None:
    decision = decide(rollout(), Outcomes(applied=19, failed=1), T0 + timedelta(minutes=5))
    assert decision.action is Action.HALT
    assert decision.state.halted
    assert decision.state.stage is Stage.CANARY
    assert "1 of 20 machines failed, crashed or turned unhealthy" in decision.reason


def test_halts_even_at_stage_all() -> None:
    decision = decide(rollout(Stage.ALL), Outcomes(50, 50), T0)
    assert decision.action is Action.HALT


def test_nothing_more_to_do_at_all_when_healthy() -> None:
    decision = decide(rollout(Stage.ALL), Outcomes(500), T0 + timedelta(days=30))
    assert decision.action is Action.NOTHING


@pytest.mark.parametrize(("halted", "withdrawn"), [(True, False), (False, True)])
def test_halted_and_withdrawn_patches_are_left_alone(halted: bool, withdrawn: bool) -> None:
    state = rollout(halted=halted, withdrawn=withdrawn)
    decision = decide(state, Outcomes(0, 100), T0 + timedelta(days=9))
    assert decision.action is Action.NOTHING


def test_per_patch_policy_changes_percentages_and_soak() -> None:
    fast = RolloutPolicy(canary_percentage=1, moderate_percentage=50, canary_soak=timedelta(0))
    decision = decide(rollout(policy=fast), Outcomes(applied=5), T0)
    assert decision.state == RolloutState(Stage.MODERATE, 50.0, False)


def test_promoted_from_all_stays_at_all() -> None:
    assert promoted(RolloutState(Stage.ALL, 100.0), POLICY).stage is Stage.ALL


def test_outcomes_failure_rate() -> None:
    assert Outcomes().failure_rate == 0.0
    assert Outcomes(3, 1).failure_rate == 0.25
