"""The state every part of the protocol engine shares, declared once.

:class:`~.swim.Swim` is assembled from four parts, each in its own module:
:class:`~.probing.Prober` (probe rounds, suspicions, verdicts),
:class:`~.selfcheck.SelfCheck` (isolation, stalls, "may I accuse?"),
:class:`~.inbound.Inbound` (message handlers) and
:class:`~.spreading.Spreading` (applying claims, dissemination, sync).
They share one instance; this base declares what that instance holds, and,
for type checkers only, the methods one part calls on another.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from prometheus_client import Counter, Gauge

from meshd.members import Member, MemberState

from .awareness import Awareness
from .gossip import TransmitQueue
from .settings import Timing
from .suspicion import Suspicion
from .table import Change, Claim, MemberTable

if TYPE_CHECKING:
    from meshd.bus import Bus
    from meshd.daemon import Daemon
    from meshd.envelope import Envelope

    from . import wire

ALIVE, SUSPECT, DEAD, LEFT, ISOLATED = (MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD,
                                        MemberState.LEFT, MemberState.ISOLATED)
MAX_CONCURRENT_HELPS = 32
"""Indirect probes this daemon runs for others at once; beyond it, it answers nack at once."""
SYNC_CONCURRENCY = 8


class BusCheck:
    """One round trip of our own echo through NATS, shared by concurrent askers."""

    __slots__ = ("done", "ok")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.ok = False


class SwimBase:
    daemon: Daemon
    region: str
    timing: Timing
    rng: random.Random
    log: logging.Logger
    regions: frozenset[str]
    others: list[str]
    table: MemberTable
    queue: TransmitQueue
    awareness: Awareness
    suspicions: dict[str, Suspicion]
    incarnation: int
    health: str | None
    isolated: bool
    isolated_reason: str
    leaving: bool
    started: bool
    started_at: float
    grace_until: float
    epoch: int
    last_tick: float
    alerts_enabled: bool
    on_change: list[Any]
    _confirmed: set[tuple[str, int]]
    _probe_order: list[str]
    _echo_waiters: dict[str, anyio.Event]
    _check: BusCheck | None
    _timer_wake: anyio.Event
    _news: anyio.Event
    _events_in: MemoryObjectSendStream[tuple[Member, Member | None]]
    _helping: int
    _last_lag_penalty: float
    _bad_logged: dict[str, float]
    m_transitions: Counter
    m_members: Gauge
    m_probes: Counter
    m_messages: Counter
    m_bad: Counter
    m_refutations: Counter
    m_stalls: Counter
    m_awareness: Gauge
    m_isolated: Gauge
    m_incarnation: Gauge

    if TYPE_CHECKING:  # implemented by the other parts; declared here for type checkers
        @property
        def bus(self) -> Bus: ...
        def self_member(self) -> Member: ...
        def suspicion_bounds(self) -> tuple[float, float]: ...
        def _update_gauges(self) -> None: ...
        async def _persist(self) -> None: ...
        def can_accuse(self) -> bool: ...
        async def bus_check(self) -> bool: ...
        def _set_isolated(self, reason: str) -> None: ...
        def _live_peers(self, exclude: Any = ()) -> list[str]: ...
        def _life(self, receiver: str | None, news: bool = True) -> dict[str, Any]: ...
        async def _ping(self, target: str, timeout: float, news: bool = True) -> int | None: ...
        async def _confirm(self, target: str, inc: int, delay: float = 0.0) -> None: ...
        def _count(self, direction: str, type: str) -> None: ...
        def _bad(self, env: Envelope, exc: wire.BadMessage) -> None: ...
        def _claims(self, env: Envelope, key: str) -> list[Claim]: ...
        async def _absorb_sync(self, env: Envelope) -> None: ...
        def _alive_claim(self) -> Claim: ...
        async def _announce(self, claims: list[Claim]) -> None: ...
        async def _sync_all(self, why: str, wanted: int | None = None) -> None: ...
        def _full_state(self) -> list[Claim]: ...
        def _touch(self, region: str) -> None: ...
        async def _heard(self, sender: str, inc: int, health: str | None, rtt_ms: float | None = None) -> None: ...
        async def _check_view(self, view: tuple[MemberState, int], sender: str) -> None: ...
        async def _merge(self, claims: Any, relay: str, *, broadcast: bool = False) -> None: ...
        async def _on_change(self, change: Change, claim: Claim, *, heard_by_all: bool = False) -> None: ...
        def _emit(self, member: Member, previous: Member | None) -> None: ...
