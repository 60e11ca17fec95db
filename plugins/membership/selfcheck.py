"""Knowing when the fault is ours: cut off from the bus, a frozen event loop, rejoining."""

from __future__ import annotations

import time

import anyio

from . import wire
from .base import ALIVE, ISOLATED, BusCheck, SwimBase


class SelfCheck(SwimBase):
    """Isolation, stalls and the rule that decides whether this daemon may accuse anyone."""

    def can_accuse(self) -> bool:
        """May this daemon start a suspicion or declare a death right now?

        Not while isolated, leaving, in the grace period after a rejoin or a
        freeze, or while its own event loop is running late: then the fault
        is more likely ours than the peer's.
        """
        now = time.monotonic()
        return (not self.isolated and not self.leaving and now >= self.grace_until
                and now - self.last_tick < self._freeze_threshold and self.bus.connected)

    @property
    def _clock_tick(self) -> float:
        """How often the clock task wakes to check that the event loop is on time."""
        return min(0.5, max(0.05, self.timing.probe_interval / 2.5))

    @property
    def _freeze_threshold(self) -> float:
        return max(1.0, 2 * self.timing.probe_interval)

    async def bus_check(self) -> bool:
        """Does our own message make the round trip through NATS in time? Concurrent callers share one."""
        if self._check is not None:
            check = self._check
            await check.done.wait()
            return check.ok
        check = self._check = BusCheck()
        nonce = f"{self.rng.getrandbits(64):016x}"
        arrived = self._echo_waiters[nonce] = anyio.Event()
        try:
            if self.bus.connected and await self.bus.publish(wire.KIND, "echo", {"n": nonce}):
                self._count("out", "echo")
                # Not stretched by awareness: a daemon whose own round trip through
                # NATS takes longer than this is cut off for all practical purposes.
                with anyio.move_on_after(self.timing.bus_check_timeout):
                    await arrived.wait()
                    check.ok = True
        finally:
            self._echo_waiters.pop(nonce, None)
            self._check = None
            check.done.set()
        return check.ok

    def _set_isolated(self, reason: str) -> None:
        if self.isolated or self.leaving:
            return
        previous = self.self_member()
        self.isolated, self.isolated_reason = True, reason
        self.epoch += 1
        self.log.warning("isolated: %s; declaring no one dead until the bus is back", reason)
        self.m_transitions.labels(self.region, ISOLATED.value).inc()
        self._emit(self.self_member(), previous)
        self._update_gauges()

    async def _rejoin(self, reason: str) -> None:
        if not self.isolated or self.leaving:
            return
        previous = self.self_member()
        self.isolated, self.isolated_reason = False, ""
        self.epoch += 1
        now = time.monotonic()
        self.grace_until = now + self.timing.rejoin_grace
        for s in self.suspicions.values():
            s.started = now
        self.incarnation += 1
        self.log.info("rejoined (%s) as incarnation %d; accusing no one for %gs", reason, self.incarnation,
                      self.timing.rejoin_grace)
        self.m_transitions.labels(self.region, ALIVE.value).inc()
        self._emit(self.self_member(), previous)
        self._update_gauges()
        await self._announce([self._alive_claim()])
        await self._persist()
        self.daemon.spawn(self._sync_all, "rejoin", name="membership-rejoin")

    async def bus_state(self, connected: bool) -> None:
        if not self.started:
            return
        if not connected:
            self._set_isolated("bus connection lost")
            return
        # The first check may be one that began before the reconnection (checks
        # are shared); a second one is fresh. The probe loop keeps trying after.
        for _ in range(2):
            if not self.isolated or self.leaving:
                return
            if await self.bus_check():
                await self._rejoin("bus connection restored")
                return

    async def _on_stall(self, lag: float) -> None:
        """Our loop was frozen (SIGSTOP, starvation): distrust what we measured meanwhile."""
        self.m_stalls.inc()
        self.epoch += 1
        self.grace_until = time.monotonic() + self.timing.rejoin_grace
        self.awareness.apply(3)
        for s in self.suspicions.values():
            s.started = time.monotonic()
        self.log.warning("event loop stalled for %.1fs; not accusing anyone for %gs", lag,
                         self.timing.rejoin_grace)
        if not self.isolated and not self.leaving and self._peers_may_have_declared_us_dead(lag):
            # Come back with a new incarnation, and catch up with one peer: what NATS delivered
            # meanwhile waited in our socket, so the exchange only mends what the cut-off
            # copies of us missed.
            self.incarnation += 1
            await self._announce([self._alive_claim()])
            await self._persist()
            self.daemon.spawn(self._sync_all, "stall", 1, name="membership-resync")

    def _peers_may_have_declared_us_dead(self, lag: float) -> bool:
        """Was the freeze long enough for a peer's suspicion of us to run out?

        A death needs a failed probe and then at least the suspicion floor.
        A shorter freeze is answered like any suspicion: by refuting it when
        the accusation arrives. Announcing a new incarnation and resyncing
        after every short stall of a starved process made its peers stall in
        turn, a storm that outlived the load that started it (100 members
        under `membership_bus.py --hog`).
        """
        freeze = lag + self._clock_tick  # the clock measures lateness past a tick it slept
        return freeze >= self.timing.suspicion_bounds(len(self.regions))[0]
