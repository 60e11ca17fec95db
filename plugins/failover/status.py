"""The failover part of ``/status`` and ``meshd status --json`` (schema in docs/failover.md)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import FailoverEngine

STATUS_DECISIONS = 100


def decisions(engine: FailoverEngine) -> list[dict[str, Any]]:
    """Committed decisions, oldest first, the last :data:`STATUS_DECISIONS`."""
    out = []
    for ledger in engine.ledgers.values():
        for term, record in ledger.records.items():
            if record is None or not record.committed:
                continue
            out.append({"region": record.region, "term": term, "action": record.action,
                        "target": record.target, "voters": list(record.voters),
                        "committed_at": record.committed_at, "committed_by": record.committed_by,
                        "tier": record.tier, "manual": record.manual, "flapping": record.flapping,
                        "requesters": [by for by, _ in record.requests],
                        "applied_at": engine.applier.applied_at.get((record.region, term))})
    out.sort(key=lambda d: (d["committed_at"], d["region"], d["term"]))
    return out[-STATUS_DECISIONS:]


def status(engine: FailoverEngine) -> dict[str, Any]:
    """Per-region state, open votes, the bucket and the audit log, as this daemon sees them."""
    now = time.monotonic()
    regions: dict[str, Any] = {}
    for name, ledger in engine.ledgers.items():
        current = ledger.current()
        term, action = ledger.next_term, ledger.next_action()
        tally = ledger.tallies.get(term) or {}
        regions[name] = {
            "state": "failed_over" if ledger.failed_over else "in_service",
            "target": current.target if current is not None and current.action == "failover" else None,
            "term": ledger.filled,
            "open": {"term": term, "action": action,
                     "yes": sorted(v.voter for v in tally.values() if v.yes and v.action == action),
                     "no": sorted(v.voter for v in tally.values() if not v.yes and v.action == action)}
            if tally else None,
        }
    cfg = engine.cfg
    return {
        "enabled": cfg.enabled,
        "isolated": engine.isolated,
        "quorum": engine.quorum,
        "configured": engine.configured,
        "failback": cfg.failback,
        "hold_down_s": cfg.hold_down,
        "rebroadcast_s": engine.rebroadcast,
        "lease_s": engine.lease,
        "kv": {"bucket": cfg.kv.bucket, "replicas": engine.kv_replicas, "available": engine.kv_ok,
               "synced": engine.synced},
        "regions": regions,
        "requests": {r: [{"action": q.action, "by": q.by, "reason": q.reason, "force": q.force,
                          "expires_in_s": round(q.expires - now, 1)} for q in pending]
                     for r in engine.ledgers if (pending := engine.operator.current(r))},
        "min_requesters": cfg.manual.min_requesters,
        "audit_log": {"path": str(engine.audit.path) if engine.audit else None,
                      "entries": engine.audit.seq if engine.audit else 0},
    }
