"""The latency objective's error budget: the share of checks slower than the p95 objective, 5 % allowed.

"p95 under 500 ms" says 95 % of checks answer within 500 ms: the budget
is the other 5 %, spent by each check slower than the objective. That is
the availability model with "answered within the objective" as the good
event (the way Sloth writes latency SLOs), so the same :class:`BurnEngine`
and the same multiwindow rules apply: a sample's weight is its number of
checks, its good part the checks at or under the objective, counted from
its histogram (to its bucket precision, 2.2 %).

Counting samples whose own p95 is over the objective instead would need a
second, invented budget (how many such samples are allowed?) and would
weigh a sample of one check like one of a hundred.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from .burn import BurnEngine, BurnRule, Transition
from .latency import Histogram, bucket_of

LATENCY_QUANTILE = Decimal(95)
"""The percent of checks a p95 objective wants under its threshold."""


def within(hist: Histogram, objective_ms: float) -> tuple[int, int]:
    """(checks, of which at or under ``objective_ms``) of a sample's histogram, at bucket precision."""
    limit = bucket_of(objective_ms)
    total = good = 0
    for b, n in hist.counts.items():
        total += n
        if b <= limit:
            good += n
    return total, good


class LatencyBurn:
    """One plan's latency budget for this region: a burn engine fed checks, not milliseconds."""

    def __init__(self, region: str, objective_ms: Decimal, rules: Iterable[BurnRule], scale: float = 1.0,
                 recover_samples: int = 30):
        self.objective_ms = objective_ms
        self.engine = BurnEngine(region, LATENCY_QUANTILE, rules, scale, recover_samples)

    def add(self, t_ms: int, span_ms: int, hist: Histogram) -> list[Transition]:
        """Feed one sample's latencies; the rules that changed (none for a sample without checks)."""
        total, good = within(hist, float(self.objective_ms))
        if not total:
            return []
        return self.engine.add(t_ms, span_ms, float(good), events=total)
