"""Token buckets (pure arithmetic, given the time) and the reports budget of each token.

``Buckets`` is a bucket per key with one rate; the HTTP rate limits
(``ratelimit``) use it per address, token and credential. ``TokenBudget`` is
the budget of all the machines of one enrolment token together, for reports:
per-credential limits alone let a token with many machines send as many
times more. Its rate grows with the token's machine limit (``per_slot``
times the limit) up to a ceiling, so a large honest fleet is not throttled
like a small one, and no token gets more than ``ceiling``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from livepatch.server.config import Rate

MAX_KEYS = 100_000
"""Keys remembered per bucket set; the least recently used go first (they are full again)."""


class Buckets:
    """A token bucket per key."""

    def __init__(self, rate: Rate, *, max_keys: int = MAX_KEYS) -> None:
        self.rate = rate
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float, rate: Rate | None = None) -> float:
        """Take one token: 0.0 when allowed, else the seconds until one is available.

        `rate` replaces the set's rate for this key (a per-key rate).
        """
        rate = rate or self.rate
        tokens, last = self._buckets.pop(key, (float(rate.burst), now))
        tokens = min(float(rate.burst), tokens + max(now - last, 0.0) * rate.per_second)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / rate.per_second
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


def token_rate(per_slot: Rate, ceiling: Rate, machine_limit: int | None) -> Rate:
    """The reports rate of a token with `machine_limit` slots: `per_slot` times its slots
    (at least one), each figure at most `ceiling`'s."""
    slots = max(machine_limit or 1, 1)
    return Rate(
        min(per_slot.per_second * slots, ceiling.per_second),
        min(per_slot.burst * slots, ceiling.burst),
    )


class TokenBudget:
    """Reports per enrolment token (all its machines together), in this process."""

    def __init__(
        self,
        per_slot: Rate,
        ceiling: Rate,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_slot = per_slot
        self.ceiling = ceiling
        self.clock = clock
        self._buckets = Buckets(ceiling)
        self._lock = threading.Lock()

    def take(self, token_id: int, machine_limit: int | None) -> float:
        """Count one report of the token: 0.0 when allowed, else the seconds to wait."""
        rate = token_rate(self.per_slot, self.ceiling, machine_limit)
        with self._lock:
            return self._buckets.take(str(token_id), self.clock(), rate)
