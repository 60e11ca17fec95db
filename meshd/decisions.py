"""Failover and failback proposals and decisions, as plugins see them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Action = Literal["failover", "failback"]


@dataclass(frozen=True)
class Proposal:
    """A question put to the federation: should ``region`` fail over (or back) in ``term``?"""

    region: str
    term: int
    action: Action
    target: str | None
    proposer: str
    reason: str = ""


@dataclass(frozen=True)
class Veto:
    """A plugin's refusal to vote yes on a proposal, with the reason recorded in the audit log."""

    reason: str


@dataclass(frozen=True)
class Decision:
    """A decision committed exactly once for (region, term) and applied by every daemon."""

    region: str
    term: int
    action: Action
    target: str | None
    voters: tuple[str, ...]
    committed_at: float
    committed_by: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "term": self.term,
            "action": self.action,
            "target": self.target,
            "voters": list(self.voters),
            "committed_at": self.committed_at,
            "committed_by": self.committed_by,
            **self.extra,
        }
