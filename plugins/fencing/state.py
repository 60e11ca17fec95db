"""When this region is fenced: a pure state machine, fed events and a clock, no I/O.

Fenced while either holds:

* this daemon has been ``isolated`` (membership's verdict on itself) for at
  least ``after`` seconds: the rest of the federation may be failing it over;
* a committed failover of this region is in force (the latest decision about
  it is a failover, not a failback): the federation has taken its traffic away.

Once fenced, the fence stays while the daemon is isolated and for ``settle``
seconds after it rejoins, so that a failover committed while it was cut off
is heard of before the fence is lifted; a failback lifts a failover's fence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Why the fence went up (fenced=True) or came down (fenced=False): the hook's ``reason``.
ISOLATED, FAILED_OVER = "isolated", "failed_over"
REJOINED, FAILED_BACK, DISABLED = "rejoined", "failed_back", "disabled"
REASONS = (ISOLATED, FAILED_OVER, REJOINED, FAILED_BACK, DISABLED)


@dataclass(frozen=True)
class Change:
    """The fence went up, came down, or stays up for another reason; why is one of :data:`REASONS`."""

    fenced: bool
    reason: str


class FenceState:
    """One region's fence. Feed it :meth:`isolated`, :meth:`rejoined`, :meth:`decision`; ask :meth:`evaluate`.

    Times are monotonic seconds passed in by the caller, so tests drive the clock.
    """

    def __init__(self, region: str, after: float, settle: float) -> None:
        self.region = region
        self.after = after
        self.settle = settle
        self.fenced = False
        self.reason = ""
        self.isolated_since: float | None = None
        self.isolated_why = ""
        self.rejoined_at: float | None = None
        self.failover: tuple[int, str | None] | None = None
        """(term, target) of the committed failover of this region in force, or None."""
        self._last_decision: tuple[int, int] | None = None
        self.last_change: dict[str, Any] | None = None
        """How long the daemon had been isolated, or back, when the fence last changed: for operators and tests."""

    # ------------------------------------------------------------ inputs

    def isolated(self, now: float, why: str = "") -> None:
        if self.isolated_since is None:
            self.isolated_since = now
        self.isolated_why = why or self.isolated_why

    def rejoined(self, now: float) -> None:
        if self.isolated_since is not None:
            self.isolated_since = None
            self.isolated_why = ""
            self.rejoined_at = now

    def decision(self, region: str, term: int, action: str, target: str | None) -> bool:
        """A committed decision; only the latest (term, failback-after-failover) about this region counts.

        Decisions arrive more than once and in any order (replayed at start,
        then live); returns whether this one changed what is in force.
        """
        if region != self.region or action not in ("failover", "failback"):
            return False
        key = (term, 1 if action == "failback" else 0)
        if self._last_decision is not None and key <= self._last_decision:
            return False
        self._last_decision = key
        self.failover = (term, target) if action == "failover" else None
        return True

    def disable(self, now: float) -> Change | None:
        """Fencing was switched off (config reload): lift a fence at once."""
        return self._set(False, DISABLED, now) if self.fenced else None

    # ------------------------------------------------------------ verdict

    def isolated_for(self, now: float) -> float | None:
        return None if self.isolated_since is None else max(0.0, now - self.isolated_since)

    def settling(self, now: float) -> bool:
        return self.rejoined_at is not None and now - self.rejoined_at < self.settle

    def evaluate(self, now: float) -> Change | None:
        """The change due at ``now``, applied; None when the fence stays as it is."""
        isolated_for = self.isolated_for(now)
        if isolated_for is not None and isolated_for >= self.after:
            return self._set(True, ISOLATED, now)
        if self.failover is not None:
            return self._set(True, FAILED_OVER, now)
        if not self.fenced or isolated_for is not None or self.settling(now):
            return None
        return self._set(False, FAILED_BACK if self.reason == FAILED_OVER else REJOINED, now)

    def next_deadline(self, now: float) -> float | None:
        """The next moment :meth:`evaluate` may change its answer without a new input, or None."""
        if self.isolated_since is not None and not self.fenced:
            return self.isolated_since + self.after
        if self.fenced and self.isolated_since is None and self.failover is None and self.settling(now):
            assert self.rejoined_at is not None
            return self.rejoined_at + self.settle
        return None

    def _set(self, fenced: bool, reason: str, now: float) -> Change | None:
        if fenced == self.fenced and (not fenced or reason == self.reason):
            return None
        # Up, down, or still up for another reason (back, but failed over meanwhile): all worth telling.
        self.fenced, self.reason = fenced, reason
        isolated_for = self.isolated_for(now)
        back_for = now - self.rejoined_at if self.rejoined_at is not None and isolated_for is None else None
        self.last_change = {"fenced": fenced, "reason": reason,
                            "isolated_for_s": None if isolated_for is None else round(isolated_for, 3),
                            "rejoined_for_s": None if back_for is None else round(back_for, 3)}
        return Change(fenced, reason)

    def to_json(self, now: float) -> dict[str, Any]:
        isolated_for = self.isolated_for(now)
        settle_left = self.rejoined_at + self.settle - now if self.fenced and self.settling(now) else None
        return {
            "fenced": self.fenced,
            "reason": self.reason or None,
            "isolated_for_s": None if isolated_for is None else round(isolated_for, 3),
            "isolated_reason": self.isolated_why or None,
            "settle_left_s": None if settle_left is None or self.isolated_since is not None else round(settle_left, 3),
            "failover": None if self.failover is None else {"term": self.failover[0], "target": self.failover[1]},
            "last_change": self.last_change,
        }
