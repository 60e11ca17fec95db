"""What one daemon answers about a period: per region and source, the time covered, the up time, the latencies.

Sent over the bus for ``meshd sla``, so it is small whatever the period:
sums, one merged histogram, and the covered time as ranges (a month of
contiguous 10 s rows is one range). :func:`merge` applies the rule of
:mod:`.sli` to the answers of several daemons: a region's own rows first,
except over time a quorum of peers saw it dead (a partition: it was cut off
whatever it measured), time it did not cover filled by a failover target's
rows, and time only peers saw (it was dead) counted as down.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .latency import Histogram
from .store import Sample, SampleStore

Range = tuple[int, int]


def ranges_of(samples: Iterable[Sample]) -> list[Range]:
    out: list[list[int]] = []
    for s in sorted(samples, key=lambda s: s.t_ms):
        if out and s.t_ms <= out[-1][1]:
            out[-1][1] = max(out[-1][1], s.end_ms)
        else:
            out.append([s.t_ms, s.end_ms])
    return [(a, b) for a, b in out]


def subtract(ranges: list[Range], cut: list[Range]) -> list[Range]:
    """``ranges`` less every part that ``cut`` covers (both sorted, non-overlapping)."""
    out: list[Range] = []
    j = 0
    for a, b in ranges:
        start = a
        while j < len(cut) and cut[j][1] <= start:
            j += 1
        k = j
        while k < len(cut) and cut[k][0] < b:
            if cut[k][0] > start:
                out.append((start, cut[k][0]))
            start = max(start, cut[k][1])
            k += 1
        if start < b:
            out.append((start, b))
    return out


def length(ranges: Iterable[Range]) -> int:
    return sum(b - a for a, b in ranges)


def intersect(a: list[Range], b: list[Range]) -> list[Range]:
    return subtract(a, subtract(a, b))


def quorum_of(regions: int) -> int:
    """A strict majority of the configured regions, as for failover decisions (7 regions: 4)."""
    return regions // 2 + 1


def condemned(region: str, answers: Iterable[dict[str, dict[str, Part]]], quorum: int) -> list[Range]:
    """The time at least ``quorum`` peers each saw ``region`` dead (each answer is one daemon's own rows)."""
    edges: list[tuple[int, int]] = []
    for answer in answers:
        part = answer.get(region, {}).get("dead")
        if part is not None:
            for a, b in _union([], part.ranges):
                edges += [(a, 1), (b, -1)]
    out: list[Range] = []
    seen, start = 0, 0
    for t, step in sorted(edges):  # at equal times the -1 sorts first: touching ranges do not stack
        before, seen = seen, seen + step
        if before < quorum <= seen:
            start = t
        elif seen < quorum <= before and t > start:
            out.append((start, t))
    return _union([], out)


@dataclass
class Part:
    """One (region, source) of one daemon's answer."""

    span_ms: int = 0
    up_ms: float = 0.0
    checks: int = 0
    hist: Histogram = field(default_factory=Histogram)
    ranges: list[Range] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"span_ms": self.span_ms, "up_ms": self.up_ms, "checks": self.checks,
                "hist": base64.b64encode(self.hist.dumps()).decode(), "ranges": [list(r) for r in self.ranges]}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Part:
        return cls(int(doc["span_ms"]), float(doc["up_ms"]), int(doc["checks"]),
                   Histogram.loads(base64.b64decode(doc.get("hist") or "")), [(int(a), int(b)) for a, b in doc["ranges"]])


def summarize_store(store: SampleStore, since_ms: int, until_ms: int) -> dict[str, dict[str, Part]]:
    """What :func:`summarize` gives for the store's rows in [since_ms, until_ms), computed mostly by SQLite."""
    out: dict[str, dict[str, Part]] = {}
    for region, source, span, up, checks in store.totals(since_ms, until_ms):
        out.setdefault(region, {})[source] = Part(
            int(span), float(up), int(checks), store.histogram(region, source, since_ms, until_ms),
            store.ranges(region, source, since_ms, until_ms))
    return out


def summarize(samples: Iterable[Sample]) -> dict[str, dict[str, Part]]:
    """Per region, per source: the sums and covered ranges of ``samples``."""
    grouped: dict[tuple[str, str], list[Sample]] = {}
    for s in samples:
        grouped.setdefault((s.region, s.source), []).append(s)
    out: dict[str, dict[str, Part]] = {}
    for (region, source), rows in grouped.items():
        part = Part(sum(r.span_ms for r in rows), sum(r.up_ms for r in rows), sum(r.checks for r in rows),
                    Histogram.merged(r.hist for r in rows), ranges_of(rows))
        out.setdefault(region, {})[source] = part
    return out


@dataclass(frozen=True)
class Merged:
    """A region's figures over a period from every daemon's answer."""

    availability: float | None
    p95_ms: float | None
    covered_ms: int
    down_seen_by_peers_ms: int
    served_by_target_ms: int
    checks: int
    overruled_ms: int = 0
    """Own rows of time a quorum of peers saw the region dead: replaced by down (or its failover target)."""
    hist: Histogram = field(default_factory=Histogram, compare=False)
    """The latencies the p95 came from (a tenant's SLI mixes several regions'); not sent."""

    def to_json(self) -> dict[str, Any]:
        return {"availability": self.availability, "p95_ms": self.p95_ms, "covered_ms": self.covered_ms,
                "down_seen_by_peers_ms": self.down_seen_by_peers_ms, "served_by_target_ms": self.served_by_target_ms,
                "checks": self.checks, "overruled_ms": self.overruled_ms}


def merge(region: str, answers: Iterable[dict[str, dict[str, Part]]], *, quorum: int | None = None,
          overruled: Part | None = None) -> Merged:
    """The rule of :mod:`.sli`, with partitions: where a quorum of peers saw the region dead, it was down.

    ``overruled``: the region's own rows over :func:`condemned` time (asked
    of it separately, see ``Runtime.merged``); they are taken out of its
    figures and that time is judged like time it did not cover.
    """
    answers = list(answers)
    own = Part()
    failover: list[Part] = []
    dead: list[Range] = []
    for answer in answers:
        parts = answer.get(region, {})
        if "probes" in parts:  # only the region itself writes its probes rows
            own = parts["probes"]
        if "failover" in parts:
            failover.append(parts["failover"])
        if "dead" in parts:
            dead = _union(dead, parts["dead"].ranges)
    span, up, checks = own.span_ms, own.up_ms, own.checks
    hist = Histogram(own.hist.counts)
    covered = list(own.ranges)
    overruled_ms = 0
    if quorum is not None and overruled is not None and overruled.span_ms:
        # A region that measured itself fine while a majority could not reach it was cut off from the
        # federation (and from the clients the majority routes): its own view is not the SLI for that time.
        covered = subtract(covered, condemned(region, answers, quorum))
        span -= overruled.span_ms
        up -= overruled.up_ms
        checks -= overruled.checks
        for b, n in overruled.hist.counts.items():
            left = hist.counts.get(b, 0) - n
            if left > 0:
                hist.counts[b] = left
            else:
                hist.counts.pop(b, None)
        overruled_ms = overruled.span_ms
    served = 0
    for part in failover:
        extra = subtract(part.ranges, covered)
        extra_ms = length(extra)
        if extra_ms and part.span_ms:
            # The target's availability over the time it served this region's tenants.
            up += part.up_ms * extra_ms / part.span_ms
            span += extra_ms
            served += extra_ms
            hist.merge(part.hist)
            covered = _union(covered, extra)
    down = length(subtract(dead, covered))
    span += down
    return Merged(up / span if span else None, hist.quantile(0.95), span, down, served, checks, overruled_ms, hist)


def _union(a: list[Range], b: list[Range]) -> list[Range]:
    out: list[list[int]] = []
    for s, e in sorted([*a, *b]):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]
