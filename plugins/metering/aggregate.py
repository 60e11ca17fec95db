"""Folding events into per-hour aggregates, and aggregates into a meter's total.

Every aggregate keeps the same fields whatever its meter's kind (events,
sum, max, latest) so that totals stay computable if an operator changes a
meter's kind. UNIQUE_COUNT members are not kept here but as digests in the
ledger (see :func:`member_digest`): distinct counts cannot be added up, the
sets must be united, across hours and across regions.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any

from .config import MeterKind
from .events import EXACT, UsageEvent

MEMBER_BYTES = 16


def member_digest(tenant: str, meter: str, value: str) -> bytes:
    """The same digest in every region, so that sets from several regions can be united exactly."""
    return hashlib.blake2b(f"{tenant}\x00{meter}\x00{value}".encode(), digest_size=MEMBER_BYTES).digest()


@dataclass(slots=True)
class Aggregate:
    """One (tenant, meter, hour) row, or the sum of many."""

    events: int = 0
    sum: Decimal = Decimal(0)
    max: Decimal | None = None
    latest_time: float = float("-inf")
    latest_key: bytes = b""
    latest_value: Decimal | str | None = None

    def merge(self, other: Aggregate) -> None:
        self.events += other.events
        self.sum = EXACT.add(self.sum, other.sum)
        if other.max is not None and (self.max is None or other.max > self.max):
            self.max = other.max
        if other.latest_value is not None and (other.latest_time, other.latest_key) > (self.latest_time,
                                                                                         self.latest_key):
            self.latest_time, self.latest_key = other.latest_time, other.latest_key
            self.latest_value = other.latest_value

    def to_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "sum": str(self.sum),
            "max": None if self.max is None else str(self.max),
            "latest": None if self.latest_value is None else [self.latest_time, self.latest_key.hex(),
                                                               str(self.latest_value)],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Aggregate:
        latest = data.get("latest")
        agg = cls(int(data["events"]), Decimal(data["sum"]),
                  None if data.get("max") is None else Decimal(data["max"]))
        if latest:
            agg.latest_time, agg.latest_key, agg.latest_value = float(latest[0]), bytes.fromhex(latest[1]), latest[2]
        return agg


def fold(events: Sequence[UsageEvent], keys: Sequence[bytes]) -> Aggregate:
    """The aggregate of one slot's events (``keys`` their dedup digests), reduced in C where it can be."""
    agg = Aggregate(events=len(events))
    values = [e.value for e in events]
    numbers = [v for v in values if type(v) is Decimal]
    if numbers:
        with localcontext(EXACT):  # an inexact sum raises instead of rounding
            agg.sum = sum(numbers, Decimal(0))
        agg.max = max(numbers)
    if len(numbers) == len(values):  # every event has a value: the tuples are built and compared in C
        latest = max(zip([e.time for e in events], keys, values), default=None)
    else:
        latest = max(((e.time, k, e.value) for e, k in zip(events, keys) if e.value is not None), default=None)
    if latest is not None:
        agg.latest_time, agg.latest_key, agg.latest_value = latest
    return agg


@dataclass
class Partial:
    """One region's share of a meter's total over a period."""

    aggregate: Aggregate = field(default_factory=Aggregate)
    members: set[bytes] | None = field(default_factory=set)
    """UNIQUE_COUNT digests; None when too many to send (the merge is then an upper bound)."""
    distinct: int = 0

    def to_json(self, max_members: int) -> dict[str, Any]:
        out = self.aggregate.to_json()
        out["distinct"] = self.distinct
        if self.members is not None and len(self.members) <= max_members:
            out["members"] = base64.b64encode(b"".join(sorted(self.members))).decode()
        else:
            out["members"] = None
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Partial:
        raw = data.get("members")
        members = None
        if raw is not None:
            blob = base64.b64decode(raw)
            members = {blob[i:i + MEMBER_BYTES] for i in range(0, len(blob), MEMBER_BYTES)}
        return cls(Aggregate.from_json(data), members, int(data.get("distinct", 0)))


@dataclass(frozen=True)
class Total:
    """A meter's total over a period, across the regions that answered."""

    kind: MeterKind
    value: Decimal | str | None
    events: int
    exact: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "value": None if self.value is None else str(self.value),
                "events": self.events, "exact": self.exact}


def total(kind: MeterKind, partials: Iterable[Partial]) -> Total:
    """Merge regions' partials the way ``kind`` says (sets are united, never added)."""
    merged = Aggregate()
    members: set[bytes] = set()
    counts: list[int] = []
    all_members = True
    for part in partials:
        merged.merge(part.aggregate)
        counts.append(part.distinct)
        if part.members is None:
            all_members = False
        else:
            members |= part.members
    if kind is MeterKind.SUM:
        return Total(kind, merged.sum, merged.events)
    if kind is MeterKind.COUNT:
        return Total(kind, Decimal(merged.events), merged.events)
    if kind is MeterKind.MAX:
        return Total(kind, merged.max, merged.events)
    if kind is MeterKind.LATEST:
        return Total(kind, merged.latest_value, merged.events)
    nonzero = [c for c in counts if c]
    if all_members:
        return Total(kind, Decimal(len(members)), merged.events)
    if len(nonzero) <= 1:
        return Total(kind, Decimal(sum(nonzero)), merged.events)
    # Some region sent only its count: the union is at most the sum of the counts.
    return Total(kind, Decimal(sum(nonzero)), merged.events, exact=False)
