"""Operators' requests for a failover or failback, and when a voter may act on them.

A request travels as a signed envelope from the region whose operator made
it, so its requester is proven by the bus. What a voter does with it:

* failover of a region it sees dead, or reporting health ``down``: yes on
  that evidence;
* failover of a region it still sees up: yes only once requests from
  ``failover.manual.min_requesters`` distinct regions are pending (a
  two-person rule: one region's admin token cannot take another region out);
* failback: yes once it has seen the region alive for ``hold_down``, as an
  automatic failback would (the request only lifts "manual" and "flapping").

The request that would strand tenants (no eligible target in the region's
jurisdiction) is refused at the requesting daemon unless forced.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from meshd.members import MemberState

from .records import Record, valid_reason

if TYPE_CHECKING:
    from .engine import FailoverEngine

BUS_TYPE = "request"
REQUEST_TTL_MIN = 30.0


@dataclass
class Request:
    """One region's operator's request, pending until decided or expired."""

    action: str
    by: str
    reason: str
    expires: float
    force: bool = False


@dataclass(frozen=True)
class Basis:
    """Why a voter says yes to operators' requests."""

    reason: str
    requests: tuple[tuple[str, str], ...]


class OperatorRequests:
    """The requests this daemon heard (its own operator's and other regions'), per region and requester."""

    def __init__(self, engine: FailoverEngine):
        self.engine = engine
        self.pending: dict[str, dict[str, Request]] = {}

    # ------------------------------------------------------------ at the requesting daemon

    def problem(self, region: str, action: str, reason: Any, force: bool = False) -> tuple[str, dict[str, Any]] | None:
        """Why an operator's request cannot go to a vote now: (error code, params), or None."""
        engine = self.engine
        if region not in engine.ledgers:
            return "unknown_region", {"region": region, "known": ", ".join(sorted(engine.ledgers))}
        if not valid_reason(reason):
            return "bad_reason", {}
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
        if action == "failover" and not force:
            stranded = self.stranded(region)
            if stranded is not None:
                return "no_target", stranded
        return None

    def stranded(self, region: str) -> dict[str, Any] | None:
        """What a failover of ``region`` would leave without any region: residencies and tenant count."""
        engine = self.engine
        if engine.committer.choose(region, "failover", set())[0] is not None:
            return None
        # Targets never leave the region's jurisdiction, so with none eligible its residency is the one
        # left without a region.
        residencies = sorted({engine.daemon.regions[region].jurisdiction})
        directory = engine.daemon.config.tenants
        tenants = sum(1 for t in (directory.tenants.values() if directory is not None else [])
                      if t.residency in residencies)
        return {"region": region, "residencies": ", ".join(residencies), "tenants": tenants}

    async def submit(self, region: str, action: str, reason: str, force: bool = False) -> dict[str, Any]:
        """Send this region's operator's request: every daemon hears it and votes on it."""
        engine = self.engine
        term = engine.ledgers[region].next_term
        body = {"region": region, "action": action, "reason": reason, "force": force}
        await engine.daemon.bus.publish(engine.bus_kind, BUS_TYPE, body)
        await self.heard(body, engine.region)
        requesters = sorted(q.by for q in self.current(region, action))
        return {"region": region, "action": action, "term": term, "quorum": engine.quorum,
                "requesters": requesters,
                "min_requesters": engine.cfg.manual.min_requesters if action == "failover" else 1}

    # ------------------------------------------------------------ at every daemon

    async def heard(self, body: Any, by: str) -> None:
        """A request from region ``by`` (this one's, or a peer's from its signed envelope)."""
        engine = self.engine
        region, action = body.get("region"), body.get("action")
        reason, force = body.get("reason"), body.get("force", False)
        if (not isinstance(region, str) or region not in engine.ledgers or action not in ("failover", "failback")
                or not valid_reason(reason) or not isinstance(force, bool)):
            engine.m_invalid.labels("request").inc()
            return
        cfg = engine.cfg
        ttl = max(REQUEST_TTL_MIN, 3 * cfg.vote_timeout)
        if action == "failback":
            ttl = max(ttl, cfg.hold_down + cfg.vote_timeout)  # voters wait out the hold-down first
        self.pending.setdefault(region, {})[by] = Request(action, by, reason, time.monotonic() + ttl, force)
        await engine.audit_append("request", {"region": region, "action": action, "by": by, "reason": reason,
                                              "force": force})
        engine.log.info("operator request from %s: %s of %s (%s)%s", by, action, region, reason,
                        " forced" if force else "")
        await engine.evaluate(region)

    def current(self, region: str, action: str | None = None) -> list[Request]:
        """Unexpired requests for ``region`` (for ``action`` only, if given), one per requesting region."""
        now = time.monotonic()
        by_region = self.pending.get(region, {})
        for by in [b for b, q in by_region.items() if q.expires < now]:
            del by_region[by]
        return sorted((q for q in by_region.values() if action is None or q.action == action),
                      key=lambda q: q.by)

    def basis(self, region: str, action: str) -> Basis | None:
        """Whether, and why, this daemon votes yes on ``action`` of ``region`` for the operators now."""
        requests = self.current(region, action)
        if not requests:
            return None
        engine = self.engine
        pairs = tuple((q.by, q.reason) for q in requests)
        via = ", ".join(f"{q.by} ({q.reason})" for q in requests)
        if action == "failback":
            alive = engine.alive_for(region)
            if alive < engine.cfg.hold_down:
                return None
            return Basis(f"operator request via {via}; {region} alive for {alive:.0f}s "
                         f"(hold-down {engine.cfg.hold_down:g}s)", pairs)
        evidence = self.evidence(region)
        if evidence is not None:
            return Basis(f"operator request via {via}; {evidence}", pairs)
        needed = engine.cfg.manual.min_requesters
        if len(requests) >= needed:
            return Basis(f"operator requests from {len(requests)} regions (at least {needed}): {via}", pairs)
        return None

    def evidence(self, region: str) -> str | None:
        """This daemon's own reason to believe ``region`` is down, if it has one it trusts."""
        engine = self.engine
        if region == engine.region or not engine.sees_quorum():
            return None
        if time.monotonic() - engine.connected_since < engine.cfg.rejoin_grace:
            return None  # the view may be stale right after a rejoin
        member = engine.view.get(region)
        if member is None:
            return None
        if member.state == MemberState.DEAD:
            return f"{region} is dead in {engine.region}'s membership view"
        if member.health == "down":
            return f"{region} reports health down"
        return None

    def settled(self, record: Record) -> None:
        """A committed decision answers the pending requests for the same action."""
        by_region = self.pending.get(record.region, {})
        for by in [b for b, q in by_region.items() if q.action == record.action]:
            del by_region[by]
