"""Token buckets of the rate limits, with a made-up clock."""

from __future__ import annotations

from livepatch.server.buckets import Buckets, TokenBudget, token_rate
from livepatch.server.config import Rate
from livepatch.server.errors import retry_after


def test_a_burst_then_the_sustained_rate() -> None:
    buckets = Buckets(Rate(per_second=0.5, burst=3))
    assert [buckets.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a", 0.0) == 2.0  # one token every 2 s
    assert buckets.take("a", 1.0) == 1.0  # refused requests take nothing
    assert buckets.take("a", 2.0) == 0.0
    assert buckets.take("b", 2.0) == 0.0  # keys are independent


def test_a_bucket_refills_to_its_burst_only() -> None:
    buckets = Buckets(Rate(per_second=10.0, burst=2))
    buckets.take("a", 0.0)
    assert [buckets.take("a", 1000.0) for _ in range(3)] == [0.0, 0.0, 0.1]


def test_the_least_recently_used_keys_are_forgotten() -> None:
    buckets = Buckets(Rate(per_second=0.001, burst=1), max_keys=2)
    for key in ("a", "b", "c"):
        assert buckets.take(key, 0.0) == 0.0
    assert buckets.take("a", 0.0) == 0.0  # forgotten: full again
    assert buckets.take("c", 0.0) > 0


def test_retry_after_is_whole_seconds_and_at_least_one() -> None:
    assert [retry_after(w) for w in (0.01, 1.0, 1.2, 59.9)] == ["1", "1", "2", "60"]


def test_a_clock_going_back_adds_nothing_and_takes_nothing() -> None:
    buckets = Buckets(Rate(per_second=1.0, burst=1))
    assert buckets.take("a", 100.0) == 0.0
    assert buckets.take("a", 50.0) == 1.0


SLOT = Rate(per_second=0.02, burst=10)
CEILING = Rate(per_second=100.0, burst=10_000)


def test_a_tokens_reports_rate_scales_with_its_machine_limit_up_to_the_ceiling() -> None:
    assert token_rate(SLOT, CEILING, 1) == Rate(0.02, 10)
    assert token_rate(SLOT, CEILING, None) == Rate(0.02, 10)  # no limit known: one slot
    assert token_rate(SLOT, CEILING, 50) == Rate(1.0, 500)
    assert token_rate(SLOT, CEILING, 1000) == Rate(20.0, 10_000)
    assert token_rate(SLOT, CEILING, 1_000_000) == Rate(100.0, 10_000)


def test_a_token_budget_is_shared_by_its_machines_and_per_token() -> None:
    now = [0.0]
    budget = TokenBudget(Rate(per_second=0.5, burst=2), CEILING, clock=lambda: now[0])
    assert [budget.take(7, 2) for _ in range(4)] == [0.0, 0.0, 0.0, 0.0]
    assert budget.take(7, 2) == 1.0  # 2 slots: 1 report a second, 4 at once
    assert budget.take(8, 2) == 0.0  # another token has its own
    now[0] = 1.0
    assert budget.take(7, 2) == 0.0
