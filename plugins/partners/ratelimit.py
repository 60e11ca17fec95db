"""A token bucket per API key: ``per_second`` refill, ``burst`` capacity, kept in this daemon's memory.

Limits are per region: a partner that spreads its calls over regions gets
each region's allowance, which is what each region can serve.
"""

from __future__ import annotations

import math
import time


class RateLimiter:
    def __init__(self, per_second: float, burst: int, clock: object = time.monotonic):
        self.per_second = per_second
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str) -> float:
        """0 when a request of ``key`` may go now (a token is spent), else the seconds until one may."""
        now = self._clock()  # type: ignore[operator]
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.per_second)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.per_second

    @staticmethod
    def retry_after(wait: float) -> str:
        """The ``Retry-After`` value (whole seconds, at least 1) for a wait."""
        return str(max(1, math.ceil(wait)))
