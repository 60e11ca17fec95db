"""Gathering probe results into one sample per interval, and the peers' rows this daemon vouches for.

Probe results arrive through ``meshd_probe_result`` on the event loop and
only touch counters in memory; once per interval :meth:`Recorder.close_interval`
turns them into rows. Writing is the caller's job (a worker thread), so the
event loop never waits on the disk.

Availability is time, not a count of checks: each result stands for its
probe from the moment its request went out (its end less its latency) until
the next result, for at most ``STALE_MS``. A probe checked four times in one
interval and once in the next (a loaded host, a slow answer) weighs the same
in both, and an interval in which no check happened to end still has the
state the last check saw. The region's availability in an interval is the
up time over the covered time of all its probes.
"""

from __future__ import annotations

from collections.abc import Collection

from .latency import Histogram
from .store import Sample

SERVICE_KINDS = frozenset({"http", "tcp"})
"""Probes that ask a service what users ask it; host probes (cpu, disk...) say how the host is, not the service."""

STALE_MS = 60_000
"""A result stands for its probe at most this long: a probe that stops reporting stops counting."""


class _ProbeTime:
    __slots__ = ("ok", "since", "last", "up", "seen")

    def __init__(self, ok: bool, since: int):
        self.ok, self.since, self.last, self.up, self.seen = ok, since, since, 0, 0

    def credit(self, until: int, start: int) -> None:
        """Account the time from the last result (or the interval's start) to ``until`` to the last result's state."""
        begin = max(self.since, start)
        until = min(until, self.last + STALE_MS)
        if until > begin:
            self.seen += until - begin
            if self.ok:
                self.up += until - begin


class Recorder:
    """The interval being gathered for this region, and what this daemon knows about its peers."""

    def __init__(self, region: str, interval_ms: int, probes: Collection[str] = ()):
        self.region = region
        self.interval_ms = interval_ms
        self.probes = frozenset(probes)
        """Probe names that count; empty: every probe of a service kind (:data:`SERVICE_KINDS`)."""
        self.total = 0
        self.hist = Histogram()
        self.times: dict[str, _ProbeTime] = {}
        self.start_ms: int | None = None
        """The start of the interval being gathered (None until the first close)."""
        self.dead: set[str] = set()
        self.failed_over: dict[str, str] = {}
        """Peer -> the region its tenants were failed over to."""
        self.ignored = 0

    def bucket(self, at_s: float) -> int:
        at_ms = int(at_s * 1000)
        return at_ms - at_ms % self.interval_ms

    def observe(self, probe: str, ok: bool, latency_ms: float, at_s: float, kind: str = "http") -> None:
        if (probe not in self.probes) if self.probes else (kind not in SERVICE_KINDS):
            self.ignored += 1
            return
        self.total += 1
        if ok:
            # Latency SLIs count the requests that were served: a timeout is an availability failure only.
            self.hist.add(latency_ms)
        sent = int(at_s * 1000 - latency_ms)
        start = self.start_ms if self.start_ms is not None else sent
        state = self.times.get(probe)
        if state is None:
            self.times[probe] = _ProbeTime(ok, max(sent, start))
            return
        sent = max(sent, state.since)
        state.credit(sent, start)
        state.ok, state.since, state.last = ok, sent, sent

    def member(self, region: str, state: str) -> None:
        if region == self.region:
            return
        if state == "dead":
            self.dead.add(region)
        else:
            self.dead.discard(region)

    def decision(self, region: str, action: str, target: str | None) -> None:
        if action == "failover" and target:
            self.failed_over[region] = target
        else:
            self.failed_over.pop(region, None)

    def close_interval(self, t_ms: int, end_ms: int | None = None) -> list[Sample]:
        """The rows for the interval starting at ``t_ms``; the counters start over.

        No row for this region when no probe reported (nothing measured is
        not "up"); a peer seen dead gets an unavailable row unless it was
        failed over; a peer failed over here gets this region's row.
        """
        end = end_ms if end_ms is not None else t_ms + self.interval_ms
        span = end - t_ms
        rows: list[Sample] = []
        own: Sample | None = None
        up = seen = 0
        for state in self.times.values():
            state.credit(end, t_ms)
            up, seen = up + state.up, seen + state.seen
            state.up = state.seen = 0
            state.since = max(state.since, end)
        if seen:
            own = Sample(self.region, t_ms, span, span * up / seen, self.total, self.hist.dumps())
            rows.append(own)
        for peer in sorted(self.dead - set(self.failed_over)):
            rows.append(Sample(peer, t_ms, span, 0.0, 0, b"", "dead"))
        for peer, target in sorted(self.failed_over.items()):
            if target == self.region and own is not None:
                rows.append(Sample(peer, t_ms, span, own.up_ms, own.checks, own.hist, "failover"))
        self.total = 0
        self.hist = Histogram()
        self.start_ms = end
        return rows
