"""One instant query over Prometheus's HTTP API, answering one number or nothing.

Plugins that read a team's existing request metrics (the deploy plugin's
canary analysis, the sla plugin's SLI source) share this client. Three
outcomes are kept apart because callers treat them differently: a number;
*no data* (None: an empty vector, NaN from a quantile over no traffic); and a
:class:`PrometheusError`, either a :class:`QueryError` (Prometheus answered
but refused the query) or :class:`PrometheusUnreachable` (no answer at all;
the message names the URL).
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request

import anyio


class PrometheusError(Exception):
    """A query that gave no number for a reason worth reporting."""


class QueryError(PrometheusError):
    """Prometheus answered, but not with one number (bad query, several series, unexpected payload)."""


class PrometheusUnreachable(PrometheusError):
    """No answer from Prometheus at all; the message names the URL."""


def _get(url: str, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            body: bytes = answer.read()
            return body
    except urllib.error.HTTPError as exc:
        # Prometheus answers a bad query with 400/422 and a JSON error: a query error, not an outage.
        body = exc.read()
        if exc.code in (400, 422, 503) and body.startswith(b"{"):
            return body
        raise PrometheusUnreachable(f"Prometheus at {url.split('?')[0]} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PrometheusUnreachable(f"Prometheus at {url.split('?')[0]} is unreachable: {reason}") from None


def parse_answer(body: bytes) -> float | None:
    """The one number of an instant query's JSON answer; None when there is no data."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise QueryError("the answer is not JSON") from None
    if not isinstance(doc, dict):
        raise QueryError("the answer is not a JSON object")
    if doc.get("status") != "success":
        raise QueryError(f"{doc.get('errorType', 'error')}: {doc.get('error', 'no reason given')}")
    data = doc.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        sample = result
    elif kind == "vector" and isinstance(result, list):
        if not result:
            return None
        if len(result) > 1:
            raise QueryError(f"the query returned {len(result)} series; aggregate it to one (sum, max, ...)")
        sample = result[0].get("value") if isinstance(result[0], dict) else None
    else:
        raise QueryError(f"the query returned a {kind}; an instant query must return one number")
    try:
        value = float(sample[1])  # type: ignore[index]
    except (TypeError, ValueError, IndexError):
        raise QueryError("the answer's sample is not [time, number]") from None
    return None if math.isnan(value) or math.isinf(value) else value


def query_blocking(base_url: str, query: str, timeout: float) -> float | None:
    """``query`` evaluated now by the Prometheus at ``base_url``; None when it has no data. Blocks."""
    url = f"{base_url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    return parse_answer(_get(url, timeout))


async def instant_query(base_url: str, query: str, timeout: float) -> float | None:
    """:func:`query_blocking` off the event loop, so the daemon's heartbeats keep running meanwhile."""
    return await anyio.to_thread.run_sync(query_blocking, base_url, query, timeout, abandon_on_cancel=True)
