"""The rollout engine's decisions, as pure functions.

Given a patch's rollout state, the outcomes reported in its current stage,
the time and the policy, `decide` says whether to promote it, halt it or
leave it alone, and why. No I/O and no clock: the service feeds it and
applies the answer (see ``patches.apply_engine``), so every rule can be
tested with made-up times and counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from livepatch.rollout import STAGE_ORDER, RolloutState, Stage
from livepatch.server.config import RolloutPolicy


@dataclass(frozen=True)
class Outcomes:
    """Counted reports in a stage (one per machine; see ``reports.py`` for what counts).

    ``applied`` is machines that applied the patch and were judged healthy
    after their health window; ``failed`` is machines whose load failed, that
    crashed with the patch young, or that applied it and turned unhealthy;
    ``pending`` applied it and are not judged yet (neither evidence nor
    failure).
    """

    applied: int = 0
    failed: int = 0
    pending: int = 0
    healthy_tokens: int | None = None
    """Distinct tokens among the healthy machines (None: as many as machines)."""
    failed_tokens: int | None = None
    """Distinct tokens among the failed machines (None: as many as machines)."""

    @property
    def total(self) -> int:
        """Judged machines: healthy or failed."""
        return self.applied + self.failed

    def tokens(self, *, failed: bool) -> int:
        if failed:
            return self.failed if self.failed_tokens is None else self.failed_tokens
        return self.applied if self.healthy_tokens is None else self.healthy_tokens

    @property
    def failure_rate(self) -> float:
        return self.failed / self.total if self.total else 0.0


@dataclass(frozen=True)
class PatchRollout:
    """What the engine needs to know about one patch."""

    state: RolloutState
    stage_started: datetime
    policy: RolloutPolicy
    withdrawn: bool = False


class Action(StrEnum):
    NOTHING = "nothing"
    PROMOTE = "promote"
    HALT = "halt"


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    state: RolloutState
    """The state after the decision (unchanged for NOTHING)."""


def percentage(stage: Stage, policy: RolloutPolicy) -> float:
    if stage is Stage.CANARY:
        return policy.canary_percentage
    if stage is Stage.MODERATE:
        return policy.moderate_percentage
    return 100.0


def soak(stage: Stage, policy: RolloutPolicy) -> timedelta:
    if stage is Stage.CANARY:
        return policy.canary_soak
    if stage is Stage.MODERATE:
        return policy.moderate_soak
    return timedelta(0)


def next_stage(stage: Stage) -> Stage | None:
    index = STAGE_ORDER.index(stage)
    return STAGE_ORDER[index + 1] if index + 1 < len(STAGE_ORDER) else None


def promoted(state: RolloutState, policy: RolloutPolicy) -> RolloutState:
    """The state one stage further on (unchanged at `all`)."""
    stage = next_stage(state.stage) or state.stage
    return RolloutState(stage=stage, percentage=percentage(stage, policy), halted=False)


def over_threshold(outcomes: Outcomes, policy: RolloutPolicy) -> bool:
    return (
        outcomes.total >= policy.minimum_sample
        and outcomes.failure_rate > policy.failure_threshold
        and outcomes.tokens(failed=True) >= policy.minimum_tokens
    )


def decide(rollout: PatchRollout, outcomes: Outcomes, now: datetime) -> Decision:
    """Promote, halt or wait, from the counted reports in the current stage.

    - A halted or withdrawn patch is left alone: only a person resumes it.
    - Halt when the failure rate (failed, crashed or unhealthy over judged
      machines) exceeds the threshold over at least the minimum sample, with
      failures from at least ``minimum_tokens`` tokens, in any stage
      (including `all`).
    - Promote only once the stage's soak time has passed AND at least
      ``minimum_applied`` machines (from at least ``minimum_tokens`` tokens)
      reported a healthy apply AND the reports are good: under the threshold
      with a full sample, or no failure at all when fewer machines were
      judged (one failure among few is a reason to wait for more). A stage
      short of evidence waits, whatever its soak; a person may promote it.
    """
    state, policy = rollout.state, rollout.policy
    if rollout.withdrawn:
        return Decision(Action.NOTHING, "the patch was withdrawn", state)
    if state.halted:
        return Decision(
            Action.NOTHING, "the patch is halted until an administrator resumes it", state
        )
    if over_threshold(outcomes, policy):
        reason = (
            f"{outcomes.failed} of {outcomes.total} machines failed, crashed or turned "
            f"unhealthy in {state.stage.value} "
            f"({outcomes.failure_rate:.1%} > {policy.failure_threshold:.1%})"
        )
        halted = RolloutState(stage=state.stage, percentage=state.percentage, halted=True)
        return Decision(Action.HALT, reason, halted)
    following = next_stage(state.stage)
    if following is None:
        return Decision(Action.NOTHING, "the patch is rolled out to all machines", state)
    ends = rollout.stage_started + soak(state.stage, policy)
    if now < ends:
        return Decision(
            Action.NOTHING, f"soaking in {state.stage.value} until {ends.isoformat()}", state
        )
    if outcomes.total < policy.minimum_sample and outcomes.failed:
        reason = (
            f"{outcomes.failed} of {outcomes.total} machines failed; waiting for "
            f"{policy.minimum_sample} reports before deciding"
        )
        return Decision(Action.NOTHING, reason, state)
    missing = policy.minimum_applied - outcomes.applied
    if missing > 0:
        return Decision(
            Action.NOTHING,
            f"waiting for {missing} more healthy reports in {state.stage.value}",
            state,
        )
    if policy.minimum_applied and outcomes.tokens(failed=False) < policy.minimum_tokens:
        reason = (
            f"waiting for healthy reports from {policy.minimum_tokens} different tokens in "
            f"{state.stage.value} (now {outcomes.tokens(failed=False)})"
        )
        return Decision(Action.NOTHING, reason, state)
    reason = (
        f"soaked {state.stage.value} with {outcomes.applied} healthy machines and "
        f"{outcomes.failed} failures in {outcomes.total} reports"
    )
    return Decision(Action.PROMOTE, reason, promoted(state, policy))
