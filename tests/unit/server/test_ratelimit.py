"""Token buckets of the rate limits, with a made-up clock."""

from __future__ import annotations

from livepatch.server.config import Rate
from livepatch.server.ratelimit import Buckets, retry_after


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
