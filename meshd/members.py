"""What a daemon knows about each region of the federation (the membership view)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any


class MemberState(str, Enum):
    """A region's state in one daemon's view.

    ``alive``, ``suspect`` and ``dead`` follow SWIM; ``left`` is a graceful
    leave (never treated as a failure); ``isolated`` is only ever a daemon's
    verdict on itself when it has lost the bus, and while isolated it declares
    no one dead.
    """

    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"
    ISOLATED = "isolated"


@dataclass(frozen=True)
class Member:
    """One region as seen by one daemon at one moment; replaced, never mutated."""

    region: str
    state: MemberState
    incarnation: int = 0
    last_heard: float | None = None
    """Wall-clock time (epoch seconds) of the last message from the region."""
    health: str | None = None
    """The region's own health verdict (healthy / degraded / down) as it last reported it."""
    rtt_ms: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def with_(self, **changes: Any) -> Member:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "state": self.state.value,
            "incarnation": self.incarnation,
            "last_heard": self.last_heard,
            "health": self.health,
            "rtt_ms": self.rtt_ms,
            **({"meta": self.meta} if self.meta else {}),
        }
