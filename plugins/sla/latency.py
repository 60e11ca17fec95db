"""Latency histograms: log-spaced buckets that merge exactly and answer quantiles to a known precision.

A bucket spans a factor of 2**(1/16) (4.4 %); a quantile is reported as the
geometric middle of its bucket, so it is within 2.2 % of the true value.
Samples of any length (10 s, 5 min, a month) merge by adding counts, which
is what lets the history be downsampled without losing the p95.
"""

from __future__ import annotations

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

    def dumps(self) -> bytes:
        """Varints: the lowest bucket, then the count of every bucket up to the highest (zeros too).

        Latencies cluster, so dense counts are shorter than index/count
        pairs: 20 checks of one row take about 20 bytes.
        """
        if not self.counts:
            return b""
        low, high = min(self.counts), max(self.counts)
        out = bytearray()
        _varint(out, low)
        for b in range(low, high + 1):
            _varint(out, self.counts.get(b, 0))
        return bytes(out)

    @classmethod
    def loads(cls, data: bytes | None) -> Histogram:
        out = cls()
        if data:
            out.add_encoded(data)
        return out

    @classmethod
    def merged(cls, blobs: Iterable[bytes | None]) -> Histogram:
        out = cls()
        for data in blobs:
            if data:
                out.add_encoded(data)
        return out

    def add_encoded(self, data: bytes, sign: int = 1) -> None:
        """Add (``sign=-1``: take away) the counts of an encoded histogram."""
        if not data:
            return
        values = _varints(data)
        low = values[0]
        counts = self.counts
        for offset, n in enumerate(values[1:]):
            if n:
                b = low + offset
                counts[b] = counts.get(b, 0) + sign * n
                if not counts[b]:
                    del counts[b]


def _varint(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _varints(data: bytes) -> list[int]:
    values: list[int] = []
    n = shift = 0
    for byte in data:
        n |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
        else:
            values.append(n)
            n = shift = 0
    return values
