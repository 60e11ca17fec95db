"""Lifeguard's local health multiplier: a slow daemon slows down instead of accusing.

The score counts recent signs that *this* daemon, not its peers, is in
trouble: probes whose helpers did not even answer (missed nacks), having to
refute a suspicion of ourselves, an event loop that wakes up late. Probe
interval and probe timeout are multiplied by ``score + 1``, so an overloaded
daemon probes less often and waits longer before it blames anyone; every
clean probe brings the score back down by one.
"""

from __future__ import annotations


class Awareness:
    def __init__(self, maximum: int):
        self.maximum = max(1, maximum)
        self.score = 0

    def apply(self, delta: int) -> int:
        """Move the score by ``delta`` within [0, maximum - 1]; return the new score."""
        self.score = min(self.maximum - 1, max(0, self.score + delta))
        return self.score

    def scale(self, seconds: float) -> float:
        return seconds * (self.score + 1)
