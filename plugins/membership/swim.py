"""SWIM with the Lifeguard refinements, over the signed NATS bus.

One :class:`Swim` per daemon. Its messages are envelopes of kind ``swim``:

* ``ping`` / ``ack`` (request/reply to ``swim.<me>.<peer>``): the probe.
  Both carry the sender's incarnation and health, the sender's view of the
  receiver (``you``, so a suspected peer learns it and refutes at once) and
  up to ``max_piggyback`` queued updates;
* ``ping-req`` / ``ack`` | ``nack``: "probe this peer for me" (indirect probe);
* ``sync`` (request/reply): full state exchange, at start, after a rejoin and
  every ``push_pull_interval`` with one random peer;
* ``gossip`` (publish to one peer): queued updates, to ``gossip_nodes`` peers
  every ``gossip_interval`` while the queue is not empty;
* ``event`` (publish to ``swim.<me>``, every daemon receives it): an update
  this daemon originates (its own alive/refutation/leave, its accusations and
  dead verdicts), so news reaches everyone in one hop; relayed news only
  travels piggybacked;
* ``echo`` (also on ``swim.<me>``): this daemon's own round trip through
  NATS, to tell "the peer is gone" from "I am cut off", and as a barrier
  that lets every refutation already delivered be processed before a dead
  verdict.

The engine is one object assembled from four parts (see :mod:`.base`):
probing, self-checks, inbound handlers and spreading; this module holds
its state, its lifecycle and the loops the daemon supervises.

Steady-state traffic per daemon is one probe (ping + ack) sent and about one
received per probe interval, whatever the federation's size; everything
else is proportional to membership *changes*, not to members.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus

from meshd.members import Member, MemberState

from . import wire
from .awareness import Awareness
from .base import ALIVE, ISOLATED, LEFT, SUSPECT
from .gossip import TransmitQueue
from .inbound import Inbound
from .probing import Prober
from .selfcheck import SelfCheck
from .settings import Timing
from .spreading import Spreading
from .suspicion import Suspicion
from .table import Claim, MemberTable

if TYPE_CHECKING:
    from meshd.bus import Bus
    from meshd.daemon import Daemon

INCARNATION_FILE = "membership.incarnation"


def load_incarnation(state_dir: Path) -> int:
    try:
        return max(0, int((state_dir / INCARNATION_FILE).read_text().strip()))
    except (FileNotFoundError, ValueError):
        return 0


def save_incarnation(state_dir: Path, value: int) -> None:
    path = state_dir / INCARNATION_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{value}\n")
    os.replace(tmp, path)


class Swim(Prober, SelfCheck, Inbound, Spreading):
    """This daemon's membership view and the protocol that keeps it."""

    def __init__(self, daemon: Daemon, timing: Timing, *, rng: random.Random | None = None,
                 log: logging.Logger | None = None):
        self.daemon = daemon
        self.region = daemon.region
        self.timing = timing
        self.rng = rng or random.Random()
        self.log = log or daemon.log.getChild("membership")
        self.regions = frozenset(daemon.regions)
        self.others = sorted(self.regions - {self.region})
        self.table = MemberTable(self.region)
        self.queue = TransmitQueue()
        self.awareness = Awareness(timing.awareness_max)
        self.suspicions: dict[str, Suspicion] = {}
        self.incarnation = 0
        self.health: str | None = None
        self.isolated = False
        self.isolated_reason = ""
        self.leaving = False
        self.started = False
        self.started_at = time.monotonic()
        self.grace_until = 0.0
        self.epoch = 0
        """Bumped when this daemon's own observations stop being trustworthy (freeze, isolation)."""
        self.last_tick = time.monotonic()
        self._confirmed: set[tuple[str, int]] = set()
        self._probe_order: list[str] = []
        self._echo_waiters: dict[str, anyio.Event] = {}
        self._check = None
        self._timer_wake = anyio.Event()
        self._news = anyio.Event()
        """Set when the piggyback queue gets something; the gossip loop sleeps until then."""
        self._events_in, self._events_out = anyio.create_memory_object_stream[tuple[Member, Member | None]](
            max_buffer_size=math.inf)
        self._helping = 0
        self._last_lag_penalty = 0.0
        self._bad_logged: dict[str, float] = {}
        self.alerts_enabled = True
        """Raise RegionDown on deaths (``membership.alerts``)."""
        self.on_change: list[Any] = []
        """Extra synchronous callbacks ``fn(member, previous)`` (tests, benchmarks)."""
        self._metrics()

    def _metrics(self) -> None:
        m = self.daemon.metrics
        self.m_transitions = m.counter("membership_transitions_total",
                                       "Membership state changes seen by this daemon, by region and new state",
                                       ["region", "state"])
        self.m_members = m.gauge("membership_members", "Regions in each state in this daemon's view "
                                 "(itself included)", ["state"])
        self.m_probes = m.counter("membership_probes_total", "Probe rounds, by outcome "
                                  "(ack, indirect_ack, failed, suppressed)", ["result"])
        self.m_messages = m.counter("membership_messages_total", "Membership messages, by direction and type",
                                    ["direction", "type"])
        self.m_bad = m.counter("membership_bad_messages_total", "Membership messages dropped as malformed, by "
                               "reason", ["reason"])
        self.m_refutations = m.counter("membership_refutations_total", "Times this daemon refuted a suspicion "
                                       "or death of itself")
        self.m_stalls = m.counter("membership_loop_stalls_total", "Times this daemon's event loop was frozen "
                                  "longer than it may be and it stopped trusting its probes")
        self.m_awareness = m.gauge("membership_awareness", "Local health score (0 = healthy); probe interval "
                                   "and timeout are multiplied by score + 1")
        self.m_isolated = m.gauge("membership_isolated", "1 while this daemon is cut off from the bus")
        self.m_incarnation = m.gauge("membership_incarnation", "This daemon's SWIM incarnation")
        for state in MemberState:
            self.m_members.labels(state.value)
        for result in ("ack", "indirect_ack", "failed", "suppressed"):
            self.m_probes.labels(result)

    def _update_gauges(self) -> None:
        counts = {s: 0 for s in MemberState}
        for m in self.table:
            counts[m.state] += 1
        counts[ISOLATED if self.isolated else ALIVE] += 1
        for state, n in counts.items():
            self.m_members.labels(state.value).set(n)
        self.m_awareness.set(self.awareness.score)
        self.m_isolated.set(1 if self.isolated else 0)
        self.m_incarnation.set(self.incarnation)

    @property
    def bus(self) -> Bus:
        return self.daemon.bus

    def self_member(self) -> Member:
        return Member(self.region, ISOLATED if self.isolated else ALIVE, self.incarnation, time.time(),
                      self.health, None, {"reason": self.isolated_reason} if self.isolated else {})

    def members(self) -> list[Member]:
        """This daemon's view, itself included, sorted by region."""
        out = [self.self_member()]
        now = time.monotonic()
        for m in self.table:
            s = self.suspicions.get(m.region)
            if m.state == SUSPECT and s is not None:
                m = m.with_(meta={"accusers": len(s.accusers),
                                  "dead_in_s": round(max(0.0, s.deadline - now), 3)})
            out.append(m)
        return sorted(out, key=lambda m: m.region)

    def suspicion_bounds(self) -> tuple[float, float]:
        return self.timing.suspicion_bounds(len(self.regions))

    async def start(self) -> None:
        """Subscribe, take a new incarnation and announce this daemon (called from meshd_startup)."""
        state_dir = self.daemon.state_dir
        self.incarnation = await anyio.to_thread.run_sync(load_incarnation, state_dir) + 1
        await self._persist()
        await self.bus.subscribe(wire.KIND, self._on_broadcast, include_self=True)
        await self.bus.subscribe(wire.KIND, self._on_direct, target=self.region)
        await self.bus.subscribe("leave", self._on_leave)
        self.started = True
        self.started_at = time.monotonic()
        self.last_tick = time.monotonic()
        self._emit(self.self_member(), None)
        self.log.info("joining as incarnation %d; %d other region(s) configured, profile timing %s",
                      self.incarnation, len(self.others), self._timing_summary())
        await self._announce([self._alive_claim()])
        self.daemon.spawn(self._sync_all, "join", name="membership-join")

    def _timing_summary(self) -> str:
        floor, ceiling = self.suspicion_bounds()
        t = self.timing
        return (f"probe {t.probe_interval:g}s/{t.probe_timeout:g}s, {t.indirect_checks} indirect, "
                f"suspicion {floor:g}-{ceiling:g}s")

    async def leave(self) -> None:
        """Announce a graceful leave with a fresh incarnation, so no older claim can undo it."""
        if self.leaving or not self.started:
            return
        self.leaving = True
        self.incarnation += 1
        await self._announce([Claim(self.region, LEFT, self.incarnation, self.region)])
        await self._persist()
        self.log.info("left the federation (incarnation %d)", self.incarnation)

    async def _persist(self) -> None:
        value = self.incarnation
        self.m_incarnation.set(value)
        try:
            await anyio.to_thread.run_sync(save_incarnation, self.daemon.state_dir, value)
        except OSError as exc:
            # Losing it only costs a refutation round after the next restart.
            self.log.warning("could not save incarnation %d in %s: %s", value, self.daemon.state_dir, exc)

    def services(self) -> list[tuple[str, Any]]:
        return [
            ("membership-probe", self._probe_loop),
            ("membership-suspicion", self._suspicion_loop),
            ("membership-gossip", self._gossip_loop),
            ("membership-reconnect", self._reconnect_loop),
            ("membership-push-pull", self._push_pull_loop),
            ("membership-clock", self._clock_loop),
            ("membership-events", self._events_loop),
        ]

    async def _guarded(self, what: str, fn: Any, *args: Any) -> Any:
        """Run one step of a loop; log its failure and carry on, so the loop never dies."""
        try:
            return await fn(*args)
        except Exception as exc:
            self.log.error("membership %s failed: %s: %s", what, type(exc).__name__, exc, exc_info=exc)
            return None

    async def _probe_loop(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            began = time.monotonic()
            if self.isolated:
                if not self.leaving and await self.bus_check():
                    await self._rejoin("the bus answers again")
            elif not self.leaving:
                target = self._next_target()
                if target is not None:
                    await self._guarded("probe", self.probe, target)
            interval = self.awareness.scale(self.timing.probe_interval)
            # A slow round (indirect probes) eats into the next wait, but never all of it.
            wait = max(0.1 * interval, interval - (time.monotonic() - began))
            await anyio.sleep(wait * self.rng.uniform(0.9, 1.1))

    async def _suspicion_loop(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self._timer_wake = anyio.Event()
            now = time.monotonic()
            for s in [s for s in self.suspicions.values() if s.due <= now]:
                await self._guarded("suspicion timeout", self._expire, s)
            if not self.suspicions:
                # Nothing can time out: a new suspicion sets the event (its deadline is only known then).
                await self._timer_wake.wait()
                continue
            nearest = min(s.due for s in self.suspicions.values())
            with anyio.move_on_after(min(1.0, max(0.005, nearest - time.monotonic()))):
                await self._timer_wake.wait()

    async def _gossip_loop(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        stuck = False
        while True:
            if stuck or not len(self.queue):
                # Nothing to send, or only claims about the one peer that is alive (a region is never
                # told its own state by gossip): wait for a new claim or a new live peer, not a timer.
                self._news = anyio.Event()
                await self._news.wait()
            await anyio.sleep(self.timing.gossip_interval)
            stuck = False
            if len(self.queue) and not self.isolated:
                stuck = await self._guarded("gossip", self._gossip_once) == 0 and self._no_one_to_tell()

    async def _reconnect_loop(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await anyio.sleep(self.timing.reconnect_interval * self.rng.uniform(0.8, 1.2))
            if not self.isolated and not self.leaving:
                await self._guarded("reconnect", self._reconnect_once)

    async def _push_pull_loop(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await anyio.sleep(self.timing.push_pull_interval * self.rng.uniform(0.8, 1.2))
            peers = self._live_peers()
            if peers and not self.isolated and not self.leaving:
                await self._guarded("push-pull", self._sync, self.rng.choice(peers))

    async def _clock_loop(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Watch our own event loop: late wake-ups mean we are the slow one."""
        task_status.started()
        tick = self._clock_tick
        late = max(0.1, self.timing.probe_timeout / 2)
        last = time.monotonic()
        while True:
            await anyio.sleep(tick)
            now = time.monotonic()
            lag, last = now - last - tick, now
            self.last_tick = now
            if lag > self._freeze_threshold:
                await self._guarded("stall handling", self._on_stall, lag)
            elif lag > late and now - self._last_lag_penalty > self.timing.probe_interval:
                self._last_lag_penalty = now
                self.awareness.apply(1)
                self.m_awareness.set(self.awareness.score)

    async def _events_loop(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Deliver transitions to other plugins in order, off the protocol's path."""
        task_status.started()
        async for member, previous in self._events_out:
            # Hooks isolate each plugin's errors; this guards our own alert building.
            await self.daemon.hooks.member_changed(self.daemon, member, previous)
            alert = await self._guarded("RegionDown alert", self._alert_for, member, previous)
            if alert is not None:
                await self.daemon.hooks.alert(self.daemon, alert)

    async def _alert_for(self, member: Member, previous: Member | None) -> Any:
        from .alerts import region_alert

        return region_alert(self, member, previous)

    async def set_health(self, status: str) -> None:
        """This region's own verdict changed: carry it with a new incarnation so it wins everywhere."""
        if status == self.health:
            return
        self.health = status
        if not self.started or self.leaving:
            return
        self.incarnation += 1
        await self._announce([self._alive_claim()])
        await self._persist()
