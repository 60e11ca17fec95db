"""Prometheus as an SLI source: instant queries over its HTTP API, for teams that already have request metrics.

Configured under ``sla.prometheus``: ``availability_query`` must return one
number, the share of good requests (0 to 1) over the last sample interval
(``sum(rate(http_requests_total{code!~"5.."}[1m])) / sum(rate(http_requests_total[1m]))``);
``latency_query`` optionally the p95 in seconds
(``histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket[1m])))``).
Each interval's answer becomes this region's row, like the probes' (the
probes then stop counting). A quantile from Prometheus is one value, not a
distribution: a window's p95 is then the p95 of the interval p95s.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshd.prometheus import PrometheusError, query_blocking


class QueryFailed(Exception):
    pass


@dataclass(frozen=True)
class Reading:
    availability: float | None
    p95_ms: float | None


def instant(base_url: str, query: str, timeout: float) -> float | None:
    """The single value of an instant query (None: an empty result); QueryFailed naming the query otherwise. Blocking."""
    try:
        return query_blocking(base_url, query, timeout)
    except PrometheusError as exc:
        raise QueryFailed(f"{query!r}: {exc}") from None


def read(base_url: str, availability_query: str, latency_query: str | None, timeout: float) -> Reading:
    ratio = instant(base_url, availability_query, timeout)
    if ratio is not None and not 0.0 <= ratio <= 1.0:
        raise QueryFailed(f"{availability_query!r} returned {ratio}, not a share between 0 and 1")
    p95 = instant(base_url, latency_query, timeout) if latency_query else None
    return Reading(ratio, None if p95 is None else p95 * 1000)
