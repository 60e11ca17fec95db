"""Latency histograms: log-spaced buckets that merge exactly and answer quantiles to a known precision.

A bucket spans a factor of 2**(1/16) (4.4 %); a quantile is reported as the
geometric middle of its bucket, so it is within 2.2 % of the true value.
Samples of any length (10 s, 5 min, a month) merge by adding counts, which
is what lets the history be downsampled without losing the p95.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping

STEPS_PER_DOUBLING = 16
PRECISION = 2 ** (1 / (2 * STEPS_PER_DOUBLING)) - 1
"""Relative error of a reported quantile (0.0219)."""


def bucket_of(ms: float) -> int:
    """The bucket of a latency; everything under 1 ms shares bucket 0."""
    if ms <= 1.0:
        return 0
    return max(0, math.ceil(STEPS_PER_DOUBLING * math.log2(ms)))


def bucket_value(index: int) -> float:
    """The latency a bucket stands for: the geometric middle of its bounds (ms)."""
    if index <= 0:
        return 1.0
    return float(2 ** ((index - 0.5) / STEPS_PER_DOUBLING))


class Histogram:
    """Counts per bucket; sparse, since one region's latencies cluster in a few buckets."""

    __slots__ = ("counts",)

    def __init__(self, counts: Mapping[int, int] | None = None):
        self.counts: dict[int, int] = dict(counts or {})

    def add(self, ms: float, n: int = 1) -> None:
        b = bucket_of(ms)
        self.counts[b] = self.counts.get(b, 0) + n

    def merge(self, other: Histogram) -> None:
        for b, n in other.counts.items():
            self.counts[b] = self.counts.get(b, 0) + n

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0 < q <= 1) in ms; None when empty."""
        total = self.total
        if total == 0:
            return None
        rank = math.ceil(q * total)
        seen = 0
        for b in sorted(self.counts):
            seen += self.counts[b]
            if seen >= rank:
                return bucket_value(b)
        return bucket_value(max(self.counts))  # unreachable: the ranks add up to total

    def dumps(self) -> str:
        return json.dumps(self.counts, separators=(",", ":")) if self.counts else ""

    @classmethod
    def loads(cls, text: str | None) -> Histogram:
        if not text:
            return cls()
        return cls({int(k): int(v) for k, v in json.loads(text).items()})

    @classmethod
    def merged(cls, texts: Iterable[str | None]) -> Histogram:
        out = cls()
        for text in texts:
            if text:
                for k, v in json.loads(text).items():
                    b = int(k)
                    out.counts[b] = out.counts.get(b, 0) + int(v)
        return out
