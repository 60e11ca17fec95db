"""Applying committed decisions: the ``meshd_failover_committed`` hooks, in order, and the alerts."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from meshd.alerting import Alert
from meshd.decisions import Decision
from meshd.i18n import Translator

from . import alerts as alert_texts
from .ledger import RegionLedger
from .records import Record

if TYPE_CHECKING:
    from meshd.daemon import Daemon

QUEUE = 1000


class Applier:
    """Runs each daemon's reactions to decisions one at a time, in the order they were learned.

    One at a time, because actions such as a DNS update must happen in term
    order; off the voting path, because an action may take seconds.
    """

    def __init__(self, daemon: Daemon, ledgers: Mapping[str, RegionLedger], translator: Callable[[], Translator]):
        self.daemon = daemon
        self.ledgers = ledgers
        self.translator = translator
        self.applied_at: dict[tuple[str, int], float] = {}
        self._queued: set[tuple[str, int]] = set()
        self._send, self._recv = anyio.create_memory_object_stream[tuple[Record | None, bool]](QUEUE)
        self._failover_alerts: dict[str, Alert] = {}
        self._failback_alerts: dict[str, Alert] = {}
        self.replay_done = anyio.Event()
        """Set once the decisions read at start are applied and the failovers still in force alerted."""
        m = daemon.metrics
        self.m_applied = m.counter("failover_decisions_applied_total", "Committed decisions applied, by action",
                                   ["action"])
        self.m_latency = m.histogram("failover_apply_seconds", "Commit to applied at this daemon",
                                     buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))

    async def queue(self, record: Record, replay: bool) -> None:
        """Apply ``record`` once in this process; ``replay`` for decisions read at start."""
        key = (record.region, record.term)
        if key not in self._queued:
            self._queued.add(key)
            await self._send.send((record, replay))

    async def replayed(self) -> None:
        """Mark the end of the decisions read at start; the failovers still in force then alert again."""
        await self._send.send((None, True))

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for record, replay in self._recv:
            if record is None:
                await self._alert_in_force()
                self.replay_done.set()
            else:
                await self.apply(record, replay)

    async def _alert_in_force(self) -> None:
        # Only once the whole bucket was read: while replaying, a region's ledger may not yet hold the
        # failback that ended a failover, and alerting on that failover would page for an incident
        # that is over (and leave the receiver's log saying it still fires).
        for region, ledger in self.ledgers.items():
            current = ledger.current()
            if current is not None and current.action == "failover" and (region, current.term) in self.applied_at:
                await self.alert(current)

    async def apply(self, record: Record, replay: bool) -> None:
        decision = Decision(record.region, record.term, record.action, record.target, record.voters,
                            record.committed_at, record.committed_by,
                            {"tier": record.tier, "reason": record.reason, "manual": record.manual,
                             "flapping": record.flapping, "replay": replay, "requests": dict(record.requests)})
        await self.daemon.hooks.failover_committed(self.daemon, decision)
        now = time.time()
        self.applied_at[(record.region, record.term)] = now
        self.m_applied.labels(record.action).inc()
        if not replay:
            self.m_latency.observe(max(0.0, now - record.committed_at))
        current = self.ledgers[record.region].current()
        if not replay and current is not None and current.term == record.term:
            await self.alert(record)

    async def alert(self, record: Record) -> None:
        t = self.translator()
        configured = len(self.ledgers)
        alert = alert_texts.decision_alert(t, record, configured)
        region, at = record.region, time.time()
        if record.action == "failover":
            old = self._failback_alerts.pop(region, None)
            self._failover_alerts[region] = alert
        else:
            old = self._failover_alerts.pop(region, None)
            if old is None:  # failed over before this process started: resolve it by its labels
                previous = self.ledgers[region].previous("failover")
                old = alert_texts.decision_alert(t, previous, configured) if previous else None
            self._failback_alerts[region] = alert
        if old is not None:
            await self.daemon.hooks.alert(self.daemon, alert_texts.resolved(old, at))
        await self.daemon.hooks.alert(self.daemon, alert)
