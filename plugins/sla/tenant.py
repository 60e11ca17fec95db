"""A tenant's SLI: the SLI of the regions that served it, weighted by its routed share when that is known.

The share is known when metering counted the tenant's usage events per
region over the window (where its requests were metered is where they were
served); else a tenant pinned to a home region was served there; else the
regions of its residency weigh the same. The view says which it used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .latency import Histogram, bucket_value
from .summary import Merged

WEIGHTINGS = ("metered", "home", "equal")


def shares(served: list[str], events: Mapping[str, int] | None, home: str | None) -> tuple[dict[str, float], str]:
    """Weights (summing to 1) of the regions that served a tenant, and how they were found (one of WEIGHTINGS).

    ``events``: metered usage events per serving region, None when metering
    could not say for every one of them (a partial count would skew the share).
    """
    if events is not None:
        total = sum(events.get(r, 0) for r in served)
        if total > 0:
            return {r: events.get(r, 0) / total for r in served if events.get(r, 0)}, "metered"
    if home:
        return {home: 1.0}, "home"
    return ({r: 1 / len(served) for r in served}, "equal") if served else ({}, "equal")


@dataclass(frozen=True)
class TenantSLI:
    availability: float | None
    p95_ms: float | None
    weights: dict[str, float]
    """The weights actually applied: those of the regions that had figures, renormalized."""


def tenant_sli(weights: Mapping[str, float], regions: Mapping[str, Merged], quantile: float = 0.95) -> TenantSLI:
    """Availability as the weighted mean, latency as the quantile of the weighted mixture of the regions' latencies.

    A region without figures over the window (nothing recorded) is left out
    and the other weights grow: no figure is not an availability of 100 %.
    """
    known = {r: w for r, w in weights.items() if w > 0 and r in regions and regions[r].availability is not None}
    total = sum(known.values())
    if not total:
        return TenantSLI(None, None, {})
    applied = {r: w / total for r, w in known.items()}
    availability = sum(w * (regions[r].availability or 0.0) for r, w in applied.items())
    return TenantSLI(availability, mixture_quantile([(regions[r].hist, w) for r, w in applied.items()], quantile),
                     applied)


def mixture_quantile(parts: list[tuple[Histogram, float]], q: float) -> float | None:
    """The ``q`` quantile of the distribution where each histogram's latencies weigh its weight in total."""
    mass: dict[int, float] = {}
    for hist, weight in parts:
        n = hist.total
        if not n or weight <= 0:
            continue
        for b, c in hist.counts.items():
            mass[b] = mass.get(b, 0.0) + weight * c / n
    total = sum(mass.values())
    if not total:
        return None
    seen = 0.0
    for b in sorted(mass):
        seen += mass[b]
        if seen >= q * total * (1 - 1e-12):  # float sums must not miss the last bucket by an ulp
            return bucket_value(b)
    return bucket_value(max(mass))
