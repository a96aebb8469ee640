"""When to check next: the interval with jitter, or capped exponential backoff.

Pure: the caller supplies the random number, so a fake clock and a fixed
sequence of draws make the whole schedule testable. Jitter spreads a fleet's
check-ins; backoff (with "equal jitter": half fixed, half random) keeps a
fleet from hammering a service that is down, and the cap bounds how long a
machine waits once it is back. A service that answers 429 or 503 with
Retry-After gets at least that wait, bounded by ``retry_after_cap`` so a
hostile or broken value cannot silence a machine for long.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Timing:
    jitter: float = 0.1
    """A check-in happens at interval * (1 +/- jitter)."""
    backoff_base: float = 30.0
    """Seconds before the first retry after a failure."""
    backoff_cap: float = 3600.0
    """No retry waits longer than this (nor longer than the interval)."""
    startup_jitter: float = 30.0
    """A check due at start-up waits up to this many seconds (a fleet rebooting at once)."""
    renew_before: float = 0.25
    """Renew the credential once this fraction of its lifetime is left (and ≥ 1 day)."""
    retry_after_cap: float = 6 * 3600.0
    """No Retry-After makes a machine wait longer than this."""


def next_delay(
    interval: float,
    failures: int,
    draw: float,
    timing: Timing = Timing(),
    retry_after: float | None = None,
) -> float:
    """Seconds until the next check; `draw` is uniform in [0, 1).

    `retry_after` (the service's Retry-After, in seconds) lengthens the wait up
    to ``timing.retry_after_cap``; it never shortens the backoff.
    """
    delay = _scheduled(interval, failures, draw, timing)
    if retry_after is None:
        return delay
    return max(delay, min(retry_after, timing.retry_after_cap))


def _scheduled(interval: float, failures: int, draw: float, timing: Timing) -> float:
    if failures <= 0:
        return interval * (1.0 + timing.jitter * (2.0 * draw - 1.0))
    cap = max(timing.backoff_base, min(timing.backoff_cap, interval))
    ceiling = min(cap, timing.backoff_base * 2.0 ** min(failures - 1, 62))
    return ceiling * (0.5 + 0.5 * draw)


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A Retry-After header (delay-seconds or an HTTP date) as seconds from `now`, or None."""
    if not value:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(min(int(text[:12]), 10**9))
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())
