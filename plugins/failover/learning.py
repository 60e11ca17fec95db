"""Reading filled slots from the bucket, in term order, and learning what they decided."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio

from .ledger import RegionLedger
from .records import InvalidRecord, Record, decode_record, slot_key

if TYPE_CHECKING:
    from .engine import FailoverEngine


class Learner:
    """Brings each region's ledger up to the bucket, logs every slot once and queues decisions to apply."""

    def __init__(self, engine: FailoverEngine):
        self.engine = engine
        self.logged_decisions: set[tuple[str, int]] = set()
        """Slots already in this daemon's audit log (read back at start): each is logged once."""
        self.last_abandon: dict[str, float] = {}
        self._locks: dict[str, anyio.Lock] = {r: anyio.Lock() for r in engine.ledgers}

    async def sync_all(self) -> None:
        for region in list(self.engine.ledgers):
            await self.sync_region(region)

    async def sync_region(self, region: str) -> None:
        """Read every slot of ``region`` after the last one known, in order, and apply what they hold."""
        engine = self.engine
        if not await engine.store.open():
            return
        ledger = engine.ledgers[region]
        async with self._locks[region]:
            while True:
                try:
                    value = await engine.store.get(slot_key(region, ledger.next_term))
                except Exception:
                    return
                if value is None:
                    break
                await self.learn(ledger, value)
        await engine.evaluate(region)

    async def learn(self, ledger: RegionLedger, value: bytes) -> None:
        engine = self.engine
        term = ledger.next_term
        jurisdictions = {r: reg.jurisdiction for r, reg in engine.daemon.regions.items()}
        try:
            record: Record | None = decode_record(value, engine.trust, engine.daemon.federation, jurisdictions,
                                                  ledger.region, term)
        except InvalidRecord as exc:
            engine.m_invalid.labels("record").inc()
            engine.log.error("slot %s/%d holds an invalid record, ignored (the term is used up): %s",
                             ledger.region, term, exc)
            record = None
        ledger.fill(term, record)
        if record is not None and record.committed:
            engine.operator.settled(record)
        if (ledger.region, term) not in self.logged_decisions:
            if await engine.audit_append("decision", self._audit_data(ledger.region, term, record)):
                self.logged_decisions.add((ledger.region, term))
        if record is None:
            return
        if record.committed:
            engine.log.info("decision %s/%d: %s of %s -> %s (voters %s, committed by %s)", record.region, term,
                            record.action, record.region, record.target or "no target", ",".join(record.voters),
                            record.committed_by)
            # Decisions read at start are replays: routing must learn them, but their alerts were
            # raised when they were made.
            await engine.applier.queue(record, replay=not engine.synced)
        else:
            self.last_abandon[ledger.region] = time.monotonic()
            engine.log.info("term %s/%d abandoned by %s: %s", record.region, term, record.committed_by,
                            record.reason)

    @staticmethod
    def _audit_data(region: str, term: int, record: Record | None) -> dict[str, Any]:
        if record is None:
            return {"region": region, "term": term, "outcome": "invalid", "digest": ""}
        return {"region": record.region, "term": term, "outcome": record.outcome, "action": record.action,
                "target": record.target, "voters": list(record.voters), "committed_by": record.committed_by,
                "committed_at": record.committed_at, "manual": record.manual, "flapping": record.flapping,
                "requesters": [by for by, _ in record.requests], "reasons": dict(record.requests),
                "digest": record.digest}
