"""A rollout as it is kept in JetStream KV: one JSON document per service, with its own hash chain.

Every transition appends an entry to ``log`` in the same compare-and-set
that changes the state, so the audit trail can neither miss a step nor
hold one twice: a step exists in the log exactly when the state moved to
it. The entries are chained like the failover audit log (same hash), and
:func:`verify_chain` checks them.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from meshd_plugins.failover.audit import GENESIS, entry_hash

RUNNING, PAUSED, GATED = "running", "paused", "awaiting_gate"
PROMOTED, ROLLED_BACK, FAILED, ABORTED = "promoted", "rolled_back", "failed", "aborted"
ACTIVE = (RUNNING, PAUSED, GATED)
FINISHED = (PROMOTED, ROLLED_BACK, FAILED, ABORTED)


@dataclass
class RegionRun:
    """One region's progress through the steps of its stage."""

    step: int = -1
    """Index into the steps; -1 before the first."""
    phase: str = "apply"
    """``apply``: the step is decided but its weights may not be in place yet; ``bake``: they are."""
    step_started: float = 0.0
    failures: int = 0
    passed: bool = False
    """A check passed during this step (a step never moves on without one)."""
    done: bool = False
    restored: bool = False
    """After a rollback: all traffic is back on stable here."""
    lease_holder: str = ""
    lease_until: float = 0.0


@dataclass
class Rollout:
    id: str
    service: str
    version: str
    stages: list[list[str]]
    gates: list[str]
    steps: list[int]
    state: str = RUNNING
    stage: int = 0
    reason: str = ""
    started: float = 0.0
    regions: dict[str, RegionRun] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)
    promote_requested: bool = False

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def stage_regions(self) -> list[str]:
        return self.stages[self.stage] if self.stage < len(self.stages) else []

    def weight(self, region: str) -> int:
        run = self.regions.get(region)
        return 0 if run is None or run.step < 0 else self.steps[run.step]

    def record(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        """Append a chained entry; it is stored with the state change that goes with it."""
        prev = self.log[-1]["hash"] if self.log else GENESIS
        seq, ts = len(self.log) + 1, round(time.time(), 6)
        entry = {"seq": seq, "ts": ts, "kind": kind, "data": data, "prev": prev,
                 "hash": entry_hash(seq, ts, kind, data, prev)}
        self.log.append(entry)
        return entry

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Rollout:
        regions = {name: RegionRun(**run) for name, run in (doc.get("regions") or {}).items()}
        return cls(**{**doc, "regions": regions})


def verify_chain(log: list[dict[str, Any]]) -> str | None:
    """Why ``log`` does not verify, or None."""
    prev = GENESIS
    for i, entry in enumerate(log, start=1):
        if entry.get("seq") != i:
            return f"entry {i}: sequence {entry.get('seq')} (dropped, reordered or duplicated)"
        if entry.get("prev") != prev:
            return f"entry {i}: does not chain to entry {i - 1}"
        if entry_hash(entry["seq"], entry["ts"], entry["kind"], entry["data"], entry["prev"]) != entry.get("hash"):
            return f"entry {i}: its content does not match its hash (edited)"
        prev = entry["hash"]
    return None
