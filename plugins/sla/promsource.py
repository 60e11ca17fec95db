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

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass


class QueryFailed(Exception):
    pass


@dataclass(frozen=True)
class Reading:
    availability: float | None
    p95_ms: float | None


def instant(base_url: str, query: str, timeout: float) -> float | None:
    """The single value of an instant query (None: an empty result); QueryFailed naming why otherwise. Blocking."""
    url = base_url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            doc = json.loads(r.read())
    except urllib.error.HTTPError as exc:
        # Prometheus says what is wrong with a query in the body of its 400/422 answer.
        try:
            detail = json.loads(exc.read()).get("error") or str(exc)
        except ValueError:
            detail = str(exc)
        raise QueryFailed(f"{query!r}: {detail}") from None
    except (OSError, ValueError) as exc:
        raise QueryFailed(f"{query!r}: {exc}") from None
    if doc.get("status") != "success":
        raise QueryFailed(f"{query!r}: {doc.get('error') or 'not a success'}")
    data = doc.get("data", {})
    result = data.get("result")
    if data.get("resultType") == "scalar":
        result = [{"value": result}]
    if not result:
        return None
    if len(result) != 1:
        raise QueryFailed(f"{query!r}: {len(result)} series, expected one (aggregate with sum or avg)")
    value = float(result[0]["value"][1])
    return None if math.isnan(value) else value


def read(base_url: str, availability_query: str, latency_query: str | None, timeout: float) -> Reading:
    ratio = instant(base_url, availability_query, timeout)
    if ratio is not None and not 0.0 <= ratio <= 1.0:
        raise QueryFailed(f"{availability_query!r} returned {ratio}, not a share between 0 and 1")
    p95 = instant(base_url, latency_query, timeout) if latency_query else None
    return Reading(ratio, None if p95 is None else p95 * 1000)
