"""When to check next: the interval with jitter, or capped exponential backoff.

Pure: the caller supplies the random number, so a fake clock and a fixed
sequence of draws make the whole schedule testable. Jitter spreads a fleet's
check-ins; backoff (with "equal jitter": half fixed, half random) keeps a
fleet from hammering a service that is down, and the cap bounds how long a
machine waits once it is back.
"""

from __future__ import annotations

from dataclasses import dataclass


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


def next_delay(interval: float, failures: int, draw: float, timing: Timing = Timing()) -> float:
    """Seconds until the next check; `draw` is uniform in [0, 1)."""
    if failures <= 0:
        return interval * (1.0 + timing.jitter * (2.0 * draw - 1.0))
    cap = max(timing.backoff_base, min(timing.backoff_cap, interval))
    ceiling = min(cap, timing.backoff_base * 2.0 ** min(failures - 1, 62))
    return ceiling * (0.5 + 0.5 * draw)
