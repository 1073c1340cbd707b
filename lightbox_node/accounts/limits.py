"""Rate limits as token buckets keyed by account or address; pure, time passed in.

`take` answers how long the caller must wait (0 when the request may go ahead), which the
HTTP layer turns into `429` with `Retry-After`. Memory is bounded: the least recently used
keys are forgotten first, which only ever forgives a client, never blocks one wrongly.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rate:
    """`burst` requests at once, refilled at `per_s` requests a second."""

    per_s: float
    burst: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.per_s) and self.per_s > 0):
            raise ValueError("a rate is a positive number of requests per second")
        if not (isinstance(self.burst, int) and self.burst >= 1):
            raise ValueError("a burst is at least one request")

    @classmethod
    def per_minute(cls, count: float, burst: int) -> Rate:
        return cls(count / 60.0, burst)


class RateLimiter:
    """One token bucket per key."""

    def __init__(self, rate: Rate, *, capacity: int = 100_000) -> None:
        self.rate = rate
        self._capacity = capacity
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        """key -> (tokens at `at`, `at`)."""

    def take(self, key: str, now: float) -> float:
        """Spend one request for `key`: 0.0 if allowed, else the seconds until it would be."""
        tokens, at = self._buckets.get(key, (float(self.rate.burst), now))
        tokens = min(float(self.rate.burst), tokens + max(0.0, now - at) * self.rate.per_s)
        if tokens < 1.0:
            self._buckets[key] = (tokens, max(at, now))
            return (1.0 - tokens) / self.rate.per_s
        self._buckets[key] = (tokens - 1.0, max(at, now))
        self._buckets.move_to_end(key)
        while len(self._buckets) > self._capacity:
            self._buckets.popitem(last=False)
        return 0.0

    def give_back(self, key: str) -> None:
        """Undo one `take` (the request was refused for another reason before costing much)."""
        entry = self._buckets.get(key)
        if entry is not None:
            self._buckets[key] = (min(float(self.rate.burst), entry[0] + 1.0), entry[1])


__all__ = ["Rate", "RateLimiter"]
