"""One analysis check of a canary: pass, fail or inconclusive, from two readings of the driver's counters.

Pure: the rollout loop takes a reading at the start and at the end of each
interval and asks :func:`judge`. Too few canary requests in between is
*inconclusive*: the step waits and never promotes on no data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from meshd.deploydriver import ServerCounters

from .pipeline import Analysis

Verdict = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True)
class Check:
    verdict: Verdict
    requests: int
    success_rate: float | None
    latency_ms: float | None
    reason: str
    at: float = 0.0
    """When the reading it judges was taken (epoch seconds)."""

    def as_dict(self) -> dict[str, object]:
        return {"verdict": self.verdict, "requests": self.requests, "success_rate": self.success_rate,
                "latency_ms": self.latency_ms, "reason": self.reason, "at": self.at}


def judge(before: ServerCounters, after: ServerCounters, analysis: Analysis) -> Check:
    requests = after.requests - before.requests
    errors = after.errors_5xx - before.errors_5xx
    if requests < 0 or errors < 0:
        # Counters went backwards: HAProxy reloaded. Nothing can be said about this interval.
        return Check("inconclusive", 0, None, None, "the load balancer's counters were reset")
    if requests < analysis.min_requests:
        return Check("inconclusive", requests, None, after.response_ms,
                     f"{requests} canary requests, fewer than min_requests {analysis.min_requests}")
    rate = 100.0 * (requests - errors) / requests
    latency = after.response_ms
    if rate < analysis.min_success_rate:
        return Check("fail", requests, rate, latency,
                     f"success rate {rate:.2f} % below {analysis.min_success_rate:g} %")
    if latency is not None and latency > analysis.max_latency_ms:
        return Check("fail", requests, rate, latency,
                     f"latency {latency:g} ms above {analysis.max_latency_ms:g} ms")
    return Check("pass", requests, rate, latency, "within thresholds")


def judge_probes(results: dict[str, bool | None], analysis: Analysis) -> Check:
    """A check from the region's health probes aimed at the canary (name -> ok, None: not run yet)."""
    missing = [name for name in analysis.probes if results.get(name) is None]
    if missing:
        return Check("inconclusive", 0, None, None, f"no result yet from probe(s) {', '.join(missing)}")
    failing = [name for name in analysis.probes if not results[name]]
    if failing:
        return Check("fail", len(analysis.probes), None, None, f"probe(s) {', '.join(failing)} failing")
    return Check("pass", len(analysis.probes), None, None, "every canary probe passes")
