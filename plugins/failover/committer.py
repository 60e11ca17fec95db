"""Filling a slot: commit it once a quorum of live yes votes is in, or abandon it when that cannot happen."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from meshd.members import MemberState

from .drconfig import choose_target
from .ledger import RegionLedger
from .records import Record, Vote, encode_record, record_body, slot_key

if TYPE_CHECKING:
    from .engine import FailoverEngine


class Committer:
    """Counts live votes of each open slot and races the other daemons to create it in the bucket."""

    def __init__(self, engine: FailoverEngine):
        self.engine = engine
        self.inflight: set[tuple[str, int]] = set()
        """Slots this daemon is creating right now: one attempt at a time per slot."""

    def live_votes(self, ledger: RegionLedger, term: int, action: str) -> list[Vote]:
        """Yes votes cast within ``vote_timeout`` and renewed by their voters within the lease."""
        engine = self.engine
        votes = ledger.yes_votes(term, action, time.time() - engine.cfg.vote_timeout,
                                 time.monotonic() - engine.lease)
        # Our own vote is renewed when it is sent, but a cut this daemon has not noticed yet (a silent
        # TCP path) takes those copies nowhere. Once the bus is back, only a copy sent since counts:
        # otherwise this daemon could commit on a vote that no peer received while it was cut off.
        if ledger.seen.get(term, {}).get(engine.region, float("inf")) < engine.connected_since:
            votes = [v for v in votes if v.voter != engine.region]
        return votes

    def check_quorum(self, region: str) -> None:
        engine = self.engine
        ledger = engine.ledgers[region]
        term, action = ledger.next_term, ledger.next_action()
        if (region, term) in self.inflight or engine.isolated or engine.kv is None or not engine.synced:
            return
        if len(self.live_votes(ledger, term, action)) >= engine.quorum:
            self.inflight.add((region, term))
            engine.daemon.spawn(self.commit, region, term, action, name="failover-commit")

    def choose(self, region: str, action: str, voters: set[str]) -> tuple[str | None, str, str]:
        """(target, tier, reason) for ``action`` of ``region`` as this daemon sees the federation now."""
        engine = self.engine
        if action == "failback":
            return region, "home", f"{region} takes its own traffic back"

        def eligible(name: str) -> bool:
            if engine.ledgers[name].failed_over:
                return False
            if name == engine.region or name in voters:
                return True
            member = engine.view.get(name)
            return member is not None and member.state == MemberState.ALIVE and member.health != "down"

        rtt = {name: m.rtt_ms for name, m in engine.view.items()}
        choice = choose_target(region, engine.daemon.config.region_map, engine.dr, eligible, rtt)
        return choice.target, choice.tier, choice.reason

    async def commit(self, region: str, term: int, action: str) -> None:
        engine = self.engine
        ledger = engine.ledgers[region]
        try:
            votes = [v for v in self.live_votes(ledger, term, action) if v.proof is not None]
            if term != ledger.next_term or len(votes) < engine.quorum:
                return
            target, tier, reason = self.choose(region, action, {v.voter for v in votes})
            now = time.time()
            previous_failback = ledger.previous("failback")
            flapping = (action == "failover" and previous_failback is not None
                        and now - previous_failback.committed_at < engine.cfg.flap_window)
            record = Record("committed", region, term, action, target, engine.region, round(now, 6),
                            reason=reason, tier=tier, manual=any(v.manual for v in votes), flapping=flapping,
                            quorum=engine.quorum)
            await self.create(record, votes)
        finally:
            self.inflight.discard((region, term))

    def maybe_abandon(self, ledger: RegionLedger, now: float) -> None:
        """Abandon the open slot once quorum is out of reach (too many no votes) or too late."""
        engine = self.engine
        term, action = ledger.next_term, ledger.next_action()
        opened = ledger.opened.get(term)
        if opened is None or (ledger.region, term) in self.inflight or engine.isolated or engine.kv is None:
            return
        configured, quorum, timeout = engine.configured, engine.quorum, engine.cfg.vote_timeout
        yes = len(self.live_votes(ledger, term, action))
        no = len(ledger.no_votes(term, action))
        if no > configured - quorum:
            reason = f"{no} of {configured} regions voted no: quorum {quorum} is out of reach"
        elif now - opened > timeout:
            reason = f"no quorum within {timeout:g}s ({yes} fresh yes, {no} no; quorum {quorum})"
        else:
            return
        self.inflight.add((ledger.region, term))
        engine.daemon.spawn(self.abandon, ledger.region, term, action, reason, name="failover-abandon")

    async def abandon(self, region: str, term: int, action: str, reason: str) -> None:
        engine = self.engine
        try:
            if term != engine.ledgers[region].next_term:
                return
            record = Record("abandoned", region, term, action, None, engine.region, round(time.time(), 6),
                            reason=reason)
            await self.create(record, [])
        finally:
            self.inflight.discard((region, term))

    async def create(self, record: Record, votes: list[Vote]) -> None:
        engine = self.engine
        if engine.kv is None or engine.isolated:
            return
        data, headers = engine.daemon.bus.seal("decision", record_body(record, votes, engine.configured))
        if await engine.store.create(slot_key(record.region, record.term), encode_record(data, headers)):
            engine.log.info("%s %s/%d (%s)", "committed" if record.committed else "abandoned",
                            record.region, record.term, record.action)
            await engine.daemon.bus.publish(engine.bus_kind, "committed",
                                            {"region": record.region, "term": record.term})
        # Whether or not this create landed (it may have, before an error), the slot says what won.
        await engine.learner.sync_region(record.region)
