"""Gathering probe results into one sample per interval, and the peers' rows this daemon vouches for.

Probe results arrive through ``meshd_probe_result`` on the event loop and
only touch counters in memory; once per interval :meth:`Recorder.close_interval`
turns them into rows. Writing is the caller's job (a worker thread), so the
event loop never waits on the disk.
"""

from __future__ import annotations

from collections.abc import Collection

from .latency import Histogram
from .store import Sample


class Recorder:
    """The interval being gathered for this region, and what this daemon knows about its peers."""

    def __init__(self, region: str, interval_ms: int, probes: Collection[str] = ()):
        self.region = region
        self.interval_ms = interval_ms
        self.probes = frozenset(probes)
        """Probe names that count; empty: every probe."""
        self.good = 0
        self.total = 0
        self.hist = Histogram()
        self.dead: set[str] = set()
        self.failed_over: dict[str, str] = {}
        """Peer -> the region its tenants were failed over to."""
        self.ignored = 0

    def bucket(self, at_s: float) -> int:
        at_ms = int(at_s * 1000)
        return at_ms - at_ms % self.interval_ms

    def observe(self, probe: str, ok: bool, latency_ms: float) -> None:
        if self.probes and probe not in self.probes:
            self.ignored += 1
            return
        self.total += 1
        if ok:
            self.good += 1
            # Latency SLIs count the requests that were served: a timeout is an availability failure only.
            self.hist.add(latency_ms)

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

    def close_interval(self, t_ms: int) -> list[Sample]:
        """The rows for the interval starting at ``t_ms``; the counters start over.

        No row for this region when no probe reported (nothing measured is
        not "up"); a peer seen dead gets an unavailable row unless it was
        failed over; a peer failed over here gets this region's row.
        """
        span = self.interval_ms
        rows: list[Sample] = []
        own: Sample | None = None
        if self.total:
            own = Sample(self.region, t_ms, span, span * self.good / self.total, self.total, self.hist.dumps())
            rows.append(own)
        for peer in sorted(self.dead - set(self.failed_over)):
            rows.append(Sample(peer, t_ms, span, 0.0, 0, b"", "dead"))
        for peer, target in sorted(self.failed_over.items()):
            if target == self.region and own is not None:
                rows.append(Sample(peer, t_ms, span, own.up_ms, own.checks, own.hist, "failover"))
        self.good = self.total = 0
        self.hist = Histogram()
        return rows
