"""Probing: one peer per interval, direct then indirect; suspicions, confirmations, verdicts."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import anyio

from meshd.envelope import Rejected
from meshd.transport import TransportError

from . import wire
from .base import ALIVE, DEAD, LEFT, SUSPECT, SwimBase
from .suspicion import Suspicion
from .table import Claim


class Prober(SwimBase):
    """The failure detector proper (SWIM's probe round, Lifeguard's suspicion)."""

    def _live_peers(self, exclude: Iterable[str] = ()) -> list[str]:
        skip = set(exclude)
        return [m.region for m in self.table.in_states(ALIVE, SUSPECT) if m.region not in skip]

    def _next_target(self) -> str | None:
        """Shuffled round robin over alive and suspect peers (memberlist's order)."""
        for _ in range(2):
            while self._probe_order:
                region = self._probe_order.pop()
                m = self.table.get(region)
                if m is not None and m.state in (ALIVE, SUSPECT):
                    return region
            self._probe_order = self._live_peers()
            self.rng.shuffle(self._probe_order)
        return None

    async def probe(self, target: str) -> str:
        """One probe round of ``target``: direct, then indirect, then suspicion. Returns the outcome."""
        epoch = self.epoch
        before = self.table.get(target)
        timeout = self.awareness.scale(self.timing.probe_timeout)
        if await self._ping(target, timeout) is not None:
            self.awareness.apply(-1)
            return self._outcome("ack")
        if epoch != self.epoch or self.isolated or self.leaving:
            return self._outcome("suppressed")
        helpers = self._live_peers(exclude=(target,))
        self.rng.shuffle(helpers)
        helpers = helpers[: self.timing.indirect_checks]
        answers: list[str | None] = []
        if helpers:
            answers = [None] * len(helpers)

            async def ask(i: int, helper: str) -> None:
                answers[i] = await self._ping_req(helper, target, 2 * timeout)

            async with anyio.create_task_group() as tg:
                for i, helper in enumerate(helpers):
                    tg.start_soon(ask, i, helper)
        if "ack" in answers:
            return self._outcome("indirect_ack")
        missed = answers.count(None)
        if missed:
            # Lifeguard: helpers that do not even say nack point at us, not at the target.
            self.awareness.apply(missed)
        if epoch != self.epoch:
            return self._outcome("suppressed")
        if missed == len(answers) and not await self.bus_check():
            self._set_isolated("no answer from any peer nor from our own echo through NATS")
            return self._outcome("suppressed")
        now = self.table.get(target)
        if (not self.can_accuse() or epoch != self.epoch or now is None or before is None
                or now.incarnation != before.incarnation or now.state not in (ALIVE, SUSPECT)):
            return self._outcome("suppressed")
        await self._accuse(target, now.incarnation)
        return self._outcome("failed")

    def _outcome(self, result: str) -> str:
        self.m_probes.labels(result).inc()
        self.m_awareness.set(self.awareness.score)
        return result

    def _life(self, receiver: str | None, news: bool = True) -> dict[str, Any]:
        """What every ping, ack and sync carries: our incarnation, health, view of the receiver, news."""
        body: dict[str, Any] = {"inc": self.incarnation, "h": self.health}
        if receiver is not None:
            m = self.table.get(receiver)
            if m is not None:
                body["you"] = wire.encode_view(m.state, m.incarnation)
        if not news:
            return body
        claims = self.queue.take(self.timing.max_piggyback, self.timing.retransmits(len(self.regions)),
                                 exclude=receiver)
        if claims:
            body["g"] = wire.encode_claims(claims)
        return body

    async def _ping(self, target: str, timeout: float, news: bool = True) -> int | None:
        """Ping ``target``; its incarnation if it acked in time, else None.

        ``news=False`` spares the piggyback queue (pinging a region we believe
        gone would only waste transmissions).
        """
        began = time.monotonic()
        self._count("out", "ping")
        try:
            env = await self.bus.request(wire.KIND, "ping", self._life(target, news), target, timeout)
        except (TransportError, Rejected):
            return None
        rtt_ms = (time.monotonic() - began) * 1000
        self._count("in", env.type)
        if env.type != "ack":
            self._bad(env, wire.BadMessage("unexpected_type", f"{env.type!r} in answer to a ping"))
            return None
        try:
            inc, health = wire.sender_life(env.body)
            view = wire.decode_view(env.body)
            claims = self._claims(env, "g")
        except wire.BadMessage as exc:
            self._bad(env, exc)
            return None
        await self._heard(target, inc, health, rtt_ms=rtt_ms)
        if view is not None:
            await self._check_view(view, target)
        await self._merge(claims, target)
        return inc

    async def _ping_req(self, helper: str, target: str, timeout: float) -> str | None:
        """Ask ``helper`` to probe ``target``: "ack", "nack", or None if the helper did not answer."""
        body = self._life(helper)
        body["target"] = target
        self._count("out", "ping-req")
        try:
            env = await self.bus.request(wire.KIND, "ping-req", body, helper, timeout)
        except (TransportError, Rejected):
            return None
        self._count("in", env.type)
        if env.type not in ("ack", "nack") or env.body.get("target") != target:
            self._bad(env, wire.BadMessage("unexpected_type", f"{env.type!r} in answer to a ping-req"))
            return None
        if env.type == "ack":
            try:
                inc, health = wire.sender_life(env.body)
            except wire.BadMessage as exc:
                self._bad(env, exc)
                return None
            await self._merge([Claim(target, ALIVE, inc, target, health)], helper)
        return env.type

    async def _accuse(self, target: str, inc: int) -> None:
        s = self.suspicions.get(target)
        if s is not None and s.incarnation == inc and s.confirmations >= s.k:
            # Already at its floor: one more accuser (a round-robin probe that reached the suspect while
            # it was suspected) would only add a broadcast to every daemon.
            return
        claim = Claim(target, SUSPECT, inc, self.region)
        change = self.table.apply(claim)
        s = self.suspicions.get(target)
        if change is not None:
            await self._on_change(change, claim)
        elif s is None or self.region in s.accusers:
            return
        s = self.suspicions.get(target)
        if s is not None and s.incarnation == inc:
            s.confirm(self.region)
            self._timer_wake.set()
        await self._announce([claim])

    async def _confirm(self, target: str, inc: int, delay: float = 0.0) -> None:
        """Lifeguard confirmation: probe a peer others suspect; accuse it too if we cannot reach it.

        ``delay``: our turn (turns.py); by then the daemons before us may have
        confirmed enough, or the suspect refuted or been declared dead.
        """
        if delay > 0:
            await anyio.sleep(delay)
        key = (target, inc)
        held = self.table.get(target)
        if (held is None or held.state != SUSPECT or held.incarnation != inc or key in self._confirmed
                or not self.can_accuse() or self._confirmed_enough(target)):
            return
        self._confirmed.add(key)
        epoch = self.epoch
        if await self._ping(target, self.awareness.scale(self.timing.probe_timeout)) is not None:
            return  # our ping told it it is suspected; it refutes
        m = self.table.get(target)
        if (m is not None and m.state == SUSPECT and m.incarnation == inc and epoch == self.epoch
                and self.can_accuse() and not self._confirmed_enough(target)):
            await self._accuse(target, inc)

    def _confirmed_enough(self, target: str) -> bool:
        """The suspicion already sits at its floor: more accusers would only add traffic.

        This bounds the messages one suspicion costs to about K broadcasts,
        whatever the federation's size.
        """
        s = self.suspicions.get(target)
        return s is not None and s.confirmations >= s.k

    async def _expire(self, s: Suspicion) -> None:
        """A suspicion ran out: after a barrier through NATS, declare the region dead."""
        if not self.can_accuse():
            s.started = time.monotonic() - s.timeout + max(self.timing.probe_interval,
                                                           self.grace_until - time.monotonic())
            return
        epoch = self.epoch
        # Barrier: our echo comes back on the same subscription as refutations,
        # so any refutation NATS delivered before it is applied by now.
        if not await self.bus_check():
            self._set_isolated("our own echo through NATS did not come back")
            return
        m = self.table.get(s.region)
        if self.suspicions.get(s.region) is not s or m is None or m.state != SUSPECT \
                or m.incarnation != s.incarnation:
            return
        if epoch != self.epoch or not self.can_accuse():
            s.started = time.monotonic()
            return
        claim = Claim(s.region, DEAD, s.incarnation, self.region)
        change = self.table.apply(claim)
        if change is not None:
            await self._on_change(change, claim)
            await self._announce([claim])

    async def _reconnect_once(self) -> None:
        """Never give up on a region: ping one dead, left or never-seen region per interval."""
        unseen = [r for r in self.others if r not in self.table]
        join_deadline = self.timing.join_deadline(len(self.regions))
        if unseen and self.can_accuse() and time.monotonic() - self.started_at >= join_deadline:
            for region in unseen:
                claim = Claim(region, DEAD, 0, self.region)
                change = self.table.apply(claim)
                if change is not None:
                    self.log.warning("%s never answered in %gs; marking it dead", region, join_deadline)
                    await self._on_change(change, claim)
            unseen = []
        candidates = unseen + [m.region for m in self.table.in_states(DEAD, LEFT)]
        if candidates:
            await self._ping(self.rng.choice(candidates), self.awareness.scale(self.timing.probe_timeout),
                             news=False)
