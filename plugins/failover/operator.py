"""Operators' requests for a failover or failback: pending until decided or expired."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .records import Record

if TYPE_CHECKING:
    from .engine import FailoverEngine

BUS_TYPE = "request"
REQUEST_TTL_MIN = 30.0


@dataclass
class Request:
    """An operator's request for a failover or failback, pending until decided or expired."""

    action: str
    by: str
    expires: float


class OperatorRequests:
    """The requests this daemon heard (its own operator's and other regions'), one pending per region."""

    def __init__(self, engine: FailoverEngine):
        self.engine = engine
        self.pending: dict[str, Request] = {}

    def problem(self, region: str, action: str) -> tuple[str, dict[str, Any]] | None:
        """Why an operator's request cannot go to a vote now: (error code, params), or None."""
        engine = self.engine
        if region not in engine.ledgers:
            return "unknown_region", {"region": region, "known": ", ".join(sorted(engine.ledgers))}
        if not engine.cfg.enabled:
            return "disabled", {}
        if engine.isolated:
            return "isolated", {}
        if engine.kv is None or not engine.synced:
            return "kv_unavailable", {"bucket": engine.cfg.kv.bucket}
        ledger = engine.ledgers[region]
        if action == "failover" and ledger.failed_over:
            return "already_failed_over", {"region": region}
        if action == "failback" and not ledger.failed_over:
            return "not_failed_over", {"region": region}
        if action == "failback" and engine.alive_for(region) < 0:
            return "not_alive", {"region": region}
        return None

    async def submit(self, region: str, action: str) -> dict[str, Any]:
        """Start this region's operator's request: every daemon hears it and votes on it."""
        engine = self.engine
        term = engine.ledgers[region].next_term
        await engine.daemon.bus.publish(engine.bus_kind, BUS_TYPE, {"region": region, "action": action})
        await self.heard(region, action, engine.region)
        return {"region": region, "action": action, "term": term, "quorum": engine.quorum}

    async def heard(self, region: Any, action: Any, by: str) -> None:
        """A request from region ``by`` (this one's or a peer's, from its signed envelope)."""
        engine = self.engine
        if not isinstance(region, str) or region not in engine.ledgers or action not in ("failover", "failback"):
            engine.m_invalid.labels("request").inc()
            return
        ttl = max(REQUEST_TTL_MIN, 3 * engine.cfg.vote_timeout)
        self.pending[region] = Request(action, by, time.monotonic() + ttl)
        await engine.audit_append("request", {"region": region, "action": action, "by": by})
        engine.log.info("operator request from %s: %s of %s", by, action, region)
        await engine.evaluate(region)

    def current(self, region: str) -> Request | None:
        """The unexpired request for ``region``, if any."""
        request = self.pending.get(region)
        if request is not None and request.expires < time.monotonic():
            del self.pending[region]
            return None
        return request

    def settled(self, record: Record) -> None:
        """A committed decision answers the pending request for the same action."""
        request = self.pending.get(record.region)
        if request is not None and request.action == record.action:
            del self.pending[record.region]
