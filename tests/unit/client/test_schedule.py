from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime

import pytest

from livepatch.client import transitions
from livepatch.client.schedule import Timing, next_delay, retry_after_seconds
from livepatch.client.state import ErrorRecord, State

HOUR = 3600.0
T0 = datetime(2026, 8, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("draw", [0.0, 0.25, 0.5, 0.999])
def test_healthy_checks_are_the_interval_with_bounded_jitter(draw):
    delay = next_delay(HOUR, 0, draw)
    assert 0.9 * HOUR <= delay <= 1.1 * HOUR


def test_jitter_spreads_a_fleet():
    rng = random.Random(7)
    delays = [next_delay(HOUR, 0, rng.random()) for _ in range(1000)]
    assert max(delays) - min(delays) > 0.15 * HOUR


def test_backoff_doubles_then_caps_at_the_interval():
    ceilings = [next_delay(HOUR, n, 0.999999) for n in range(1, 12)]
    assert ceilings[0] == pytest.approx(30, rel=1e-3)
    assert ceilings[1] == pytest.approx(60, rel=1e-3)
    assert ceilings[2] == pytest.approx(120, rel=1e-3)
    assert all(b >= a for a, b in itertools.pairwise(ceilings))
    assert max(ceilings) == pytest.approx(HOUR, rel=1e-3)


def test_backoff_never_goes_below_half_its_ceiling():
    assert next_delay(HOUR, 3, 0.0) == pytest.approx(60.0)


def test_custom_cap_below_interval():
    timing = Timing(backoff_base=1.0, backoff_cap=10.0)
    assert next_delay(HOUR, 50, 0.9999, timing) == pytest.approx(10.0, rel=1e-3)


def test_huge_failure_counts_do_not_overflow():
    assert next_delay(HOUR, 10_000, 0.5) <= HOUR


def test_fake_clock_schedule_of_an_outage_and_recovery():
    """Service down for 10 check-ins: retries get sparser, then normal cadence resumes."""
    rng = random.Random(1)
    clock, failures, times = 0.0, 0, []
    outcomes = [False] * 10 + [True] * 3
    for ok in outcomes:
        failures = 0 if ok else failures + 1
        clock += next_delay(HOUR, failures, rng.random())
        times.append(clock)
    gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    assert gaps[0] < 60 and gaps[9] <= HOUR
    assert sum(gaps[:10]) < 5 * HOUR
    assert all(0.9 * HOUR <= gap <= 1.1 * HOUR for gap in gaps[10:])


DOWN = ErrorRecord("service-unreachable", "connection refused")
REJECTED = ErrorRecord("metadata-rejected", "the timestamp signature is bad")
CREDENTIAL = ErrorRecord("credential-rejected", "the credential is no longer accepted")


def delay_after(state: State, draw: float = 0.5) -> float:
    return next_delay(HOUR, state.failures, draw)


@pytest.mark.parametrize("refusal", [REJECTED, CREDENTIAL], ids=lambda e: e.code)
def test_a_non_retryable_failure_waits_the_normal_interval(refusal):
    """Backoff is for trouble that goes away: a refusal meets the same refusal sooner."""
    state = State()
    for _ in range(3):
        state = transitions.check_failed(state, DOWN, T0, retryable=True)
    assert delay_after(state, 0.999) < 0.1 * HOUR  # still retrying soon: the network is down
    state = transitions.check_failed(state, refusal, T0, retryable=False)
    for draw in (0.0, 0.5, 0.999):
        assert 0.9 * HOUR <= delay_after(state, draw) <= 1.1 * HOUR
    # the network fails again: backoff starts over from its base
    state = transitions.check_failed(state, DOWN, T0, retryable=True)
    assert delay_after(state, 0.999) == pytest.approx(Timing().backoff_base, rel=1e-3)


def test_repeated_non_retryable_failures_never_back_off():
    state = State()
    for _ in range(20):
        state = transitions.check_failed(state, REJECTED, T0, retryable=False)
        assert 0.9 * HOUR <= delay_after(state) <= 1.1 * HOUR


NOW = datetime(2026, 8, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("Sat, 01 Aug 2026 12:05:00 GMT", 300.0),
        ("Sat, 01 Aug 2026 11:00:00 GMT", 0.0),  # in the past: no extra wait
        ("99999999999999999999", 1e9),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_header(header, seconds):
    assert retry_after_seconds(header, NOW) == seconds


def test_retry_after_lengthens_the_wait_up_to_its_cap():
    timing = Timing(jitter=0.0, backoff_base=30.0, retry_after_cap=6 * HOUR)
    assert next_delay(HOUR, 1, 0.5, timing, retry_after=600.0) == 600.0
    assert next_delay(HOUR, 1, 0.5, timing, retry_after=10**9) == 6 * HOUR
    # never shorter than the backoff: a hostile "Retry-After: 0" cannot make it hammer
    assert next_delay(HOUR, 6, 0.5, timing, retry_after=0.0) == 720.0  # 30 * 2**5 * 0.75
    assert next_delay(HOUR, 0, 0.5, timing, retry_after=0.0) == HOUR
    assert next_delay(HOUR, 1, 0.5, timing) == 22.5
