"""Hysteresis: a probe's state changes only after N consecutive results say so.

One slow answer is not an incident, and one good answer is not a recovery.
A probe's settled state is ``pending`` (no verdict yet, counted as passing),
``ok``, ``warning`` or ``critical``. The rules, for ``fail_after`` = F and
``recover_after`` = R:

* From ``pending``, the first ok result settles the state at ``ok``; F
  consecutive failing results settle it at the mildest level among them.
* From a settled state S, F consecutive results worse than S move the
  state to the mildest level among them (``ok`` -> warning, critical,
  critical -> ``warning``); R consecutive results better than S move it to
  the worst level among them (``critical`` -> ok, warning, ok -> ``warning``).
* A result equal to S, or one pointing the other way, restarts the count.

So the state moves to the level that *every* one of the last N results
reached, and never further.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from .probes import Level


class ProbeState(str, Enum):
    """A probe's settled state, as shown in ``/status`` and metrics."""

    PENDING = "pending"
    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"

    @classmethod
    def of(cls, level: Level) -> ProbeState:
        return cls(level.label)

    @property
    def level(self) -> Level:
        """The level this state counts as; ``pending`` counts as ok."""
        return Level.OK if self is ProbeState.PENDING else Level[self.name]

    @property
    def failing(self) -> bool:
        return self in (ProbeState.WARNING, ProbeState.CRITICAL)


@dataclass
class Hysteresis:
    """The settled state of one probe, fed one result level at a time."""

    fail_after: int
    recover_after: int
    state: ProbeState = ProbeState.PENDING
    consecutive: int = 0
    """How many results in a row had the latest result's level."""
    last: Level | None = None
    _streak: list[Level] = field(default_factory=list)
    _worsening: bool = False

    def __post_init__(self) -> None:
        if self.fail_after < 1 or self.recover_after < 1:
            raise ValueError("fail_after and recover_after must be at least 1")

    @property
    def streak(self) -> int:
        """Results in a row pointing away from the settled state (toward a change)."""
        return len(self._streak)

    @property
    def needed(self) -> int:
        """How many such results the pending change needs in all (0 when none is pending)."""
        if not self._streak:
            return 0
        return self.fail_after if self._worsening else self.recover_after

    def observe(self, level: Level) -> ProbeState | None:
        """Feed one result; return the new state if it changed, else None."""
        self.consecutive = self.consecutive + 1 if level == self.last else 1
        self.last = level
        if self.state is ProbeState.PENDING and level is Level.OK:
            self._streak.clear()
            return self._settle(ProbeState.OK)
        current = self.state.level
        if level == current:
            self._streak.clear()
            return None
        worsening = level > current
        if not self._streak or worsening != self._worsening:
            self._streak = []
            self._worsening = worsening
        self._streak.append(level)
        if len(self._streak) < (self.fail_after if worsening else self.recover_after):
            return None
        target = min(self._streak) if worsening else max(self._streak)
        self._streak.clear()
        return self._settle(ProbeState.of(target))

    def _settle(self, state: ProbeState) -> ProbeState | None:
        if state is self.state:
            return None
        self.state = state
        return state
