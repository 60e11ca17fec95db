"""Lifeguard's dynamic suspicion timeout.

A suspicion starts with the long timeout (the ceiling) and shrinks toward
the floor, logarithmically, as independent accusers confirm it: with K
confirmations the timeout is the floor. One daemon with a bad link alone
therefore needs the whole ceiling to condemn a peer, which the peer can
easily use to refute, while a peer that every survivor fails to reach is
declared dead after the floor. (Dadgar et al., "Lifeguard", arXiv:1707.00788,
section IV-B; the same formula as memberlist's suspicion.go.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def suspicion_timeout(floor: float, ceiling: float, confirmations: int, k: int) -> float:
    """The timeout after ``confirmations`` independent confirmations (not counting the first accuser)."""
    if k < 1 or ceiling <= floor:
        return floor
    fraction = math.log(confirmations + 1) / math.log(k + 1)
    return max(floor, ceiling - (ceiling - floor) * fraction)


@dataclass
class Suspicion:
    """One suspicion of one region at one incarnation, as this daemon holds it."""

    region: str
    incarnation: int
    started: float
    """Monotonic time it began here (restarted when this daemon rejoins)."""
    floor: float
    ceiling: float
    k: int
    accusers: set[str] = field(default_factory=set)
    verdict_delay: float = 0.0
    """How long past the timeout this daemon waits for another's verdict before giving its own (turns.py)."""

    @property
    def confirmations(self) -> int:
        return max(0, len(self.accusers) - 1)

    def confirm(self, accuser: str) -> bool:
        """Count ``accuser``; True if it is a new one (the deadline moved)."""
        if accuser in self.accusers:
            return False
        self.accusers.add(accuser)
        return True

    @property
    def timeout(self) -> float:
        return suspicion_timeout(self.floor, self.ceiling, self.confirmations, self.k)

    @property
    def deadline(self) -> float:
        return self.started + self.timeout

    @property
    def due(self) -> float:
        """When this daemon judges, unless a verdict or a refutation came first."""
        return self.deadline + self.verdict_delay
