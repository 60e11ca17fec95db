"""When to try a failed delivery again: exponential backoff with jitter, honouring Retry-After."""

from __future__ import annotations

import random
from dataclasses import dataclass

from meshd.backoff import exponential


@dataclass(frozen=True)
class RetryPolicy:
    initial: float = 1.0
    maximum: float = 60.0
    jitter: float = 0.2
    retry_after_max: float = 600.0
    rate_limited_min: float = 5.0

    def delay(self, attempt: int, *, retry_after: float | None = None, rate_limited: bool = False,
              rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        The exponential delay ``initial * 2**(attempt-1)``, capped at
        ``maximum``, is drawn from ``[d*(1-jitter), d]`` so that daemons
        failing together do not retry together. A server's Retry-After wins
        when it asks for longer (up to ``retry_after_max``); a 429 without
        one waits at least ``rate_limited_min``.
        """
        delay = exponential(attempt, self.initial, self.maximum, jitter=self.jitter, rng=rng)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_after_max))
        elif rate_limited:
            delay = max(delay, self.rate_limited_min)
        return delay
