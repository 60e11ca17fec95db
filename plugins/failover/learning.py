"""Reading filled slots from the bucket, in term order, and learning what they decided.

A daemon that starts (or reconnects) lists the bucket's keys once and fetches
the slots it has not read concurrently, a bounded number at a time: on a WAN
link one round trip per slot made a restarted region wait seconds for the
decisions in force, and it must not route before it has them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio

from .commitstore import keys_in
from .ledger import RegionLedger
from .records import InvalidRecord, Record, decode_record, slot_key

FETCH_CONCURRENCY = 16
"""Slot reads in flight at once during a full read: enough to hide WAN latency, few enough not to
flood a JetStream leader that seven restarting daemons read from at the same moment."""

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

    async def sync_all(self) -> bool:
        """Read every region's slots the ledgers lack: one listing, then concurrent reads.

        True only if every region is read up to the listing; False if the bucket did not answer
        (each ledger keeps the slots read in order before the failure).
        """
        engine = self.engine
        if not await engine.store.open():
            return False
        try:
            listed = keys_in(await engine.store.keys())
        except Exception:
            return False
        results: dict[str, bool] = {}
        limiter = anyio.CapacityLimiter(FETCH_CONCURRENCY)

        async def one(region: str) -> None:
            results[region] = await self._read_listed(region, listed.get(region, []), limiter)

        async with anyio.create_task_group() as tg:
            for region in self.engine.ledgers:
                tg.start_soon(one, region)
        for region in self.engine.ledgers:
            await engine.evaluate(region)
        return all(results.values())

    async def poll(self) -> None:
        """Look for slots filled since the last read, every region at once (one read each when none is)."""
        async with anyio.create_task_group() as tg:
            for region in self.engine.ledgers:
                tg.start_soon(self.sync_region, region)

    async def _read_listed(self, region: str, terms: list[int], limiter: anyio.CapacityLimiter) -> bool:
        ledger = self.engine.ledgers[region]
        async with self._locks[region]:
            wanted = [t for t in terms if t >= ledger.next_term]
            values: dict[int, bytes | None] = {}
            failed = False

            async def fetch(term: int) -> None:
                nonlocal failed
                async with limiter:
                    if failed:
                        return
                    try:
                        values[term] = await self.engine.store.get(slot_key(region, term))
                    except Exception:
                        failed = True

            async with anyio.create_task_group() as tg:
                for term in wanted:
                    tg.start_soon(fetch, term)
            # Learn in term order up to the first slot not read: a gap is read again on the next pass.
            while (value := values.get(ledger.next_term)) is not None:
                await self._learn_whole(ledger, value)
        return not failed

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
                await self._learn_whole(ledger, value)
        await engine.evaluate(region)

    async def _learn_whole(self, ledger: RegionLedger, value: bytes) -> None:
        # Shielded: a slot filled in the ledger but never queued for the applier would be a decision
        # routing never hears of. The vote loop can be cancelled mid-read (its service's readiness
        # timeout while the bucket is slow), and the next read starts after the filled slot.
        with anyio.CancelScope(shield=True):
            await self.learn(ledger, value)

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
