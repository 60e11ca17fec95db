"""How long to wait before trying again: exponential backoff with jitter.

Every retry loop of the daemon and its plugins (a service restart, the
first bus connect, the metering consumer, alert delivery) draws its waits
from here. The jitter matters more than it looks: when a NATS node
restarts, seven daemons fail at the same instant, and without it they would
all retry on the same tick, again and again.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

DEFAULT_JITTER = 0.2


def exponential(attempt: int, initial: float, maximum: float, *, factor: float = 2.0,
                jitter: float = DEFAULT_JITTER, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    The nominal delay ``initial * factor**(attempt-1)``, capped at
    ``maximum``, is drawn from ``[d*(1-jitter), d]``: never longer than the
    cap, and still growing from one attempt to the next (full jitter,
    ``[0, d]``, would sometimes retry at once after a long outage).
    """
    exponent = max(attempt, 1) - 1
    try:
        nominal = min(maximum, initial * factor ** exponent)
    except OverflowError:  # factor**exponent beyond a float: long past the cap
        nominal = maximum
    if not jitter:
        return nominal
    return nominal * (rng or random).uniform(1.0 - jitter, 1.0)


@dataclass
class Backoff:
    """The waits of one retry loop: :meth:`next` after each failure, :meth:`reset` after a success."""

    initial: float
    maximum: float
    factor: float = 2.0
    jitter: float = DEFAULT_JITTER
    rng: random.Random | None = None
    attempts: int = field(default=0, init=False)
    """Failures since the last reset."""

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < 0:
            raise ValueError(f"backoff: initial ({self.initial}) and maximum ({self.maximum}) must not be negative")
        if self.factor < 1:
            raise ValueError(f"backoff: factor must be at least 1, not {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"backoff: jitter is a fraction of the delay, 0..1, not {self.jitter}")

    def next(self) -> float:
        """Count one more failure; the seconds to wait before the next attempt."""
        self.attempts += 1
        return exponential(self.attempts, self.initial, self.maximum, factor=self.factor, jitter=self.jitter,
                           rng=self.rng)

    def reset(self) -> None:
        """The operation succeeded (or ran well for a while): the next failure waits ``initial`` again."""
        self.attempts = 0
