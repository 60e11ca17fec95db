"""One analysis check of a canary: pass, fail or inconclusive, from the driver, the probes or Prometheus.

Pure: the rollout loop takes a reading at the start and at the end of each
interval and asks :func:`judge` (driver counters), :func:`judge_probes`
(the canary probes' samples of the interval) or :func:`judge_readings`
(Prometheus's answers). Too little data is *inconclusive*: the step waits
and never promotes on no data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
    return thresholds(requests, 100.0 * (requests - errors) / requests, after.response_ms, analysis)


def thresholds(requests: int, rate: float, latency: float | None, analysis: Analysis, what: str = "latency") -> Check:
    if rate < analysis.min_success_rate:
        return Check("fail", requests, rate, latency,
                     f"success rate {rate:.2f} % below {analysis.min_success_rate:g} %")
    if latency is not None and latency > analysis.max_latency_ms:
        return Check("fail", requests, rate, latency,
                     f"{what} {latency:g} ms above {analysis.max_latency_ms:g} ms")
    return Check("pass", requests, rate, latency, "within thresholds")


def p99(samples: Sequence[float]) -> float:
    """The 99th percentile by the nearest-rank method: a sample that was really measured, never interpolated."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def judge_probes(results: dict[str, bool | None], analysis: Analysis,
                 samples: Sequence[float] = (), rounds: int = 0, failed_rounds: int = 0) -> Check:
    """A check from the region's health probes aimed at the canary.

    ``results``: each probe's last outcome (None: not run yet); ``samples``:
    the probes' latencies (ms) over the interval, ``rounds`` of which
    ``failed_rounds`` had a failing probe. A failing probe fails the check at
    once; the p99 needs ``analysis.min_samples`` samples, else inconclusive.
    """
    missing = [name for name in analysis.probes if results.get(name) is None]
    if missing:
        return Check("inconclusive", 0, None, None, f"no result yet from probe(s) {', '.join(missing)}")
    failing = [name for name in analysis.probes if not results[name]]
    rate = 100.0 * (rounds - failed_rounds) / rounds if rounds else None
    if failing:
        return Check("fail", len(samples), rate, None, f"probe(s) {', '.join(failing)} failing")
    if len(samples) < analysis.min_samples:
        return Check("inconclusive", len(samples), rate, None,
                     f"{len(samples)} probe latency samples, fewer than min_samples {analysis.min_samples}")
    return thresholds(len(samples), 100.0 if rate is None else rate, p99(samples), analysis, "probe p99")


def judge_readings(success_rate: float | None, latency_ms: float | None, analysis: Analysis) -> Check:
    """A check from Prometheus's answers; a missing one (no data) is inconclusive, never a pass."""
    if success_rate is None or latency_ms is None:
        which = " and ".join(n for n, v in (("success_rate", success_rate), ("latency_ms", latency_ms)) if v is None)
        return Check("inconclusive", 0, success_rate, latency_ms, f"Prometheus has no data for {which}")
    return thresholds(0, success_rate, latency_ms, analysis, "p99")
