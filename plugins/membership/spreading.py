"""What the daemon learns and tells: claims applied, transitions reported, news disseminated."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import anyio

from meshd.envelope import Rejected
from meshd.members import Member, MemberState
from meshd.transport import TransportError

from . import wire
from .base import ALIVE, DEAD, SUSPECT, SYNC_CONCURRENCY, SwimBase
from .suspicion import Suspicion
from .table import Change, Claim
from .turns import rank


class Spreading(SwimBase):
    """The view's updates, their side effects, and the ways news travels."""

    def _alive_claim(self) -> Claim:
        return Claim(self.region, ALIVE, self.incarnation, self.region, self.health)

    async def _announce(self, claims: list[Claim]) -> None:
        """Publish updates we originate to every daemon at once (one NATS message)."""
        for claim in claims:
            if claim.region != self.region:
                self._spread(claim)
        self._count("out", "event")
        await self.bus.publish(wire.KIND, "event", {"g": wire.encode_claims(claims)})

    def _no_one_to_tell(self) -> bool:
        """No live peer may take any queued claim: none is live, or the one live peer is all they are about."""
        peers = set(self._live_peers())
        return not peers or (len(peers) == 1 and self.queue.subjects() <= peers)

    async def _gossip_once(self) -> int:
        """One gossip round; the number of messages sent."""
        peers = self._live_peers()
        self.rng.shuffle(peers)
        limit = self.timing.retransmits(len(self.regions))
        sent = 0
        for peer in peers[: self.timing.gossip_nodes]:
            claims = self.queue.take(self.timing.max_piggyback, limit, exclude=peer)
            if claims:
                self._count("out", "gossip")
                await self.bus.publish(wire.KIND, "gossip", {"g": wire.encode_claims(claims)}, target=peer)
                sent += 1
        return sent

    async def _sync(self, peer: str) -> bool:
        """Full state exchange with ``peer`` (push-pull); True if it answered."""
        body = self._life(peer)
        body["members"] = wire.encode_claims(self._full_state())
        self._count("out", "sync")
        try:
            env = await self.bus.request(wire.KIND, "sync", body, peer,
                                         self.awareness.scale(self.timing.bus_check_timeout))
        except (TransportError, Rejected):
            return False
        self._count("in", env.type)
        await self._absorb_sync(env)
        return True

    async def _sync_all(self, why: str, wanted: int | None = None) -> None:
        """Full state exchange with a few random regions: after start, a rejoin or a stall.

        Peers are tried in random order, ``SYNC_CONCURRENCY`` at a time, until
        ``wanted`` (by default ``Timing.join_syncs``) of them answered: one that
        is down or still starting only costs its timeout, and the exchanges stay
        O(log N) per daemon instead of one per configured region.
        """
        wanted = wanted or self.timing.join_syncs(len(self.regions))
        order = list(self.others)
        self.rng.shuffle(order)
        answered = tried = 0
        while order and answered < wanted:
            batch = [order.pop() for _ in range(min(len(order), SYNC_CONCURRENCY, wanted - answered))]
            tried += len(batch)
            results: list[bool] = []
            async with anyio.create_task_group() as tg:
                for peer in batch:
                    tg.start_soon(self._sync_into, peer, results)
            answered += sum(results)
        self.log.info("%s: full state exchanged with %d of %d region(s) tried (%d configured)", why, answered,
                      tried, len(self.others))

    async def _sync_into(self, peer: str, results: list[bool]) -> None:
        results.append(await self._sync(peer))

    def _full_state(self) -> list[Claim]:
        out = [self._alive_claim()]
        for m in self.table:
            source = None
            s = self.suspicions.get(m.region)
            if m.state == SUSPECT and s is not None and s.accusers:
                source = sorted(s.accusers)[0]
            out.append(Claim(m.region, m.state, m.incarnation, source, m.health))
        return out

    def _touch(self, region: str) -> None:
        if region in self.table:
            self.table.touch(region, last_heard=time.time())

    async def _heard(self, sender: str, inc: int, health: str | None, rtt_ms: float | None = None) -> None:
        """A message straight from ``sender``: it is alive at ``inc`` (if that is news)."""
        if sender == self.region:
            return
        await self._merge([Claim(sender, ALIVE, inc, sender, health)], sender)
        fields: dict[str, Any] = {"last_heard": time.time()}
        if rtt_ms is not None:
            old = (self.table.get(sender) or Member(sender, ALIVE)).rtt_ms
            fields["rtt_ms"] = round(rtt_ms if old is None else 0.7 * old + 0.3 * rtt_ms, 3)
        self.table.touch(sender, **fields)

    async def _check_view(self, view: tuple[MemberState, int], sender: str) -> None:
        """``sender`` told us how it sees us; refute a suspicion, death or stale leave."""
        state, inc = view
        await self._about_self(Claim(self.region, state, inc, sender))

    async def _about_self(self, claim: Claim) -> None:
        if self.leaving:
            return
        if (claim.state != ALIVE and claim.incarnation >= self.incarnation) or \
                (claim.state == ALIVE and claim.incarnation > self.incarnation):
            self.incarnation = max(self.incarnation, claim.incarnation) + 1
            self.m_refutations.inc()
            if claim.state == SUSPECT:
                self.awareness.apply(1)  # being suspected says we were slow
            self.log.info("refuting %s of us (incarnation %d, from %s): now incarnation %d",
                          claim.state.value, claim.incarnation, claim.source or "?", self.incarnation)
            await self._announce([self._alive_claim()])
            await self._persist()

    async def _merge(self, claims: Iterable[Claim], relay: str, *, broadcast: bool = False) -> None:
        """Apply ``claims`` heard from ``relay``; ``broadcast`` if they came in a message every daemon got."""
        for claim in claims:
            if claim.region == self.region:
                await self._about_self(claim)
                continue
            if claim.state == SUSPECT and claim.source is None:
                claim = Claim(claim.region, claim.state, claim.incarnation, relay, claim.health)
            change = self.table.apply(claim)
            if change is not None:
                # Said by the relay in its own name, in a message every daemon got: a region's own alive,
                # or an accuser's accusation or verdict.
                heard_by_all = broadcast and (claim.region == relay if claim.state == ALIVE
                                              else claim.source == relay)
                await self._on_change(change, claim, heard_by_all=heard_by_all)

    async def _on_change(self, change: Change, claim: Claim, *, heard_by_all: bool = False) -> None:
        m, prev = change.member, change.previous
        newly_suspect = m.state == SUSPECT and (prev is None or prev.state != SUSPECT
                                                or prev.incarnation != m.incarnation)
        if newly_suspect:
            floor, ceiling = self.suspicion_bounds()
            # No more confirmations can come than there are other live daemons
            # to send them (memberlist caps K the same way in small clusters).
            live = [p.region for p in self.table.in_states(ALIVE, SUSPECT)]
            possible = len(live) - 1
            # Our turn among the live daemons to confirm and to judge (turns.py): a few act, not all N.
            position = rank(self.region, live, m.region, m.incarnation)
            s = Suspicion(m.region, m.incarnation, time.monotonic(), floor, ceiling,
                          max(0, min(self.timing.suspicion_confirmations, possible)),
                          verdict_delay=self.timing.verdict_delay(position))
            s.confirm(claim.source or "?")
            self.suspicions[m.region] = s
            self._timer_wake.set()
            if self.timing.confirm_suspicions and claim.source != self.region:
                self.daemon.spawn(self._confirm, m.region, m.incarnation, self.timing.confirm_delay(position),
                                  name="membership-confirm")
        elif change.confirmation:
            held = self.suspicions.get(m.region)
            if held is None or not held.confirm(claim.source or "?"):
                return  # an accuser we already counted: nothing new to spread
            self._timer_wake.set()
        elif m.state != SUSPECT:
            self.suspicions.pop(m.region, None)
            self._confirmed = {key for key in self._confirmed if key[0] != m.region}
        # What a region said in its own broadcast reached every daemon that was up: gossiping it again
        # (a first sighting while a large federation starts, a new incarnation after a stall or a
        # health change) was N x N piggybacked claims that fed the stalls it followed. A first sighting
        # learned from a third party (a join sync, gossip) is still spread: a daemon that started after
        # the broadcast, and cannot reach that region itself, has no other way to hear of it. A
        # refutation of a suspicion or death we held is always spread: it must reach everyone.
        # Accusations and verdicts heard in their accuser's broadcast are not spread again either: with
        # every daemon relaying each confirmation and verdict it heard, one crash at 100 members queued
        # hundreds of gossip messages per daemon while the verdict was due. The accuser piggybacks its
        # own (_announce), and a daemon that missed the broadcast has its own probes and push-pull.
        heard_alive = heard_by_all and m.state == ALIVE and (prev is None or prev.state == ALIVE)
        heard_accusation = heard_by_all and m.state in (SUSPECT, DEAD)
        if not (heard_alive or heard_accusation):
            self._spread(claim)
        if not change.transition:
            if prev is not None and prev.health != m.health:
                # Not a transition, but plugins that route or fail over need the region's own verdict.
                self.log.info("%s: health %s -> %s (incarnation %d)", m.region, prev.health, m.health,
                              m.incarnation)
                self._emit(m, prev)
            return
        if m.state in (ALIVE, SUSPECT):
            self._news.set()  # a live peer more: claims no live peer could take may go now
        if prev is None and m.state in (ALIVE, SUSPECT) and self._probe_order:
            self._probe_order.insert(self.rng.randrange(len(self._probe_order) + 1), m.region)
        self.m_transitions.labels(m.region, m.state.value).inc()
        self._update_gauges()
        detail = f"incarnation {m.incarnation}"
        if m.state in (SUSPECT, DEAD) and claim.source:
            detail += f", by {claim.source}"
        if prev is not None and m.health != prev.health:
            detail += f", health {m.health}"
        self.log.info("%s: %s -> %s (%s)", m.region, prev.state.value if prev else "unknown", m.state.value, detail)
        self._emit(m, prev)

    def _spread(self, claim: Claim) -> None:
        """Queue ``claim`` for piggybacking and wake the gossip loop."""
        self.queue.push(claim)
        self._news.set()

    def _emit(self, member: Member, previous: Member | None) -> None:
        for fn in self.on_change:
            fn(member, previous)
        self._events_in.send_nowait((member, previous))
