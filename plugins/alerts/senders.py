"""Blocking senders, run in a worker thread under a deadline: apprise, PagerDuty Events API v2, Opsgenie.

Each returns a :class:`meshd.DeliveryResult` whose ``retryable`` and
``retry_after`` drive the outbox's retries: timeouts, connection errors,
5xx and 429 are retried (honouring Retry-After where meshd sees the
response); any other 4xx is final.

apprise throttles between requests of one service object (5.5 s by default,
1.2 s for Slack) and may retry on its own; meshd makes a fresh object per
send with both switched off, since the outbox does the pacing and retrying.
apprise reports one boolean, so the HTTP status of a failure is read from
its log record in this thread (``error=503``).
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from meshd.alerting import DeliveryResult

from .targets import OPSGENIE_ALIAS_MAX, OPSGENIE_REGIONS, PAGERDUTY_REGIONS, Target

USER_AGENT = "meshd-alerts/1"
PD_SEVERITIES = ("critical", "error", "warning", "info")
OG_PRIORITY = {"critical": "P1", "error": "P2", "warning": "P3", "info": "P5"}


# ---------------------------------------------------------------- classifying results


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    import time

    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def from_status(status: int, headers: Mapping[str, str] | None = None, detail: str = "") -> DeliveryResult:
    """What an HTTP status means for a delivery: ok, retry (5xx, 429, 408), or final (other 4xx)."""
    retry_after = parse_retry_after((headers or {}).get("retry-after"))
    if 200 <= status < 300:
        return DeliveryResult(True, detail=f"http_{status}")
    reason = detail or f"HTTP {status}"
    if status == 429:
        return DeliveryResult(False, retryable=True, retry_after=retry_after, detail=f"http_429: {reason}")
    if status >= 500 or status == 408:
        return DeliveryResult(False, retryable=True, retry_after=retry_after, detail=f"http_{status}: {reason}")
    return DeliveryResult(False, retryable=False, detail=f"http_{status}: {reason}")


def failure_reason(result: DeliveryResult) -> str:
    """A short metric label for a failed attempt: timeout, connection, http_429, http_5xx, http_4xx, error."""
    head = result.detail.split(":", 1)[0].strip()
    if head == "http_429":
        return "http_429"
    if head.startswith("http_5"):
        return "http_5xx"
    if head.startswith("http_"):
        return "http_4xx"
    if head in ("timeout", "connection", "invalid_url", "no_notifier", "rate_limited"):
        return head
    return "error"


# ---------------------------------------------------------------- plain HTTP (PagerDuty, Opsgenie)


def post_json(url: str, payload: Any, headers: Mapping[str, str], timeout: float) -> DeliveryResult:
    data = json.dumps(payload, ensure_ascii=False).encode()
    req = urllib.request.Request(url, data=data, method="POST")
    req.add_header("Content-Type", "application/json")
    req.add_header("User-Agent", USER_AGENT)
    for name, value in headers.items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read(65536)
            return from_status(resp.status, {k.lower(): v for k, v in resp.headers.items()})
    except urllib.error.HTTPError as exc:
        body = exc.read(512).decode(errors="replace") if exc.fp else ""
        hdrs = {k.lower(): v for k, v in (exc.headers or {}).items()}
        return from_status(exc.code, hdrs, f"HTTP {exc.code} {' '.join(body.split())[:200]}".strip())
    except TimeoutError:
        return DeliveryResult(False, retryable=True, detail="timeout: no answer in time")
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (TimeoutError, socket.timeout)):
            return DeliveryResult(False, retryable=True, detail="timeout: no answer in time")
        return DeliveryResult(False, retryable=True, detail=f"connection: {exc.reason}")
    except OSError as exc:
        return DeliveryResult(False, retryable=True, detail=f"connection: {exc}")


def pagerduty_event(target: Target, base_url: str, *, resolve: bool, dedup_key: str, summary: str,
                    severity: str, details: Mapping[str, Any], links: list[str], timestamp: str,
                    group: str, klass: str, source: str) -> dict[str, Any]:
    """An Events API v2 event: trigger (or update) the incident keyed ``dedup_key``, or resolve it."""
    event: dict[str, Any] = {"routing_key": target.key, "event_action": "resolve" if resolve else "trigger",
                             "dedup_key": dedup_key[:255], "client": "meshd"}
    if resolve:
        return event
    payload: dict[str, Any] = {
        "summary": summary[:1024],
        "source": (target.source or source)[:255],
        "severity": severity if severity in PD_SEVERITIES else "error",
        "timestamp": timestamp,
        "custom_details": dict(details),
    }
    if target.component:
        payload["component"] = target.component
    if group:
        payload["group"] = group[:255]
    if klass:
        payload["class"] = klass[:255]
    event["payload"] = payload
    if links:
        event["links"] = [{"href": href, "text": "runbook"} for href in links[:5]]
    return event


def pagerduty_base(target: Target, configured: str, default: str) -> str:
    """The receiver's pagerduty_url, or the URL's region when the receiver kept the default."""
    if configured.rstrip("/") == default.rstrip("/") and target.region in PAGERDUTY_REGIONS:
        return PAGERDUTY_REGIONS[target.region]
    return configured.rstrip("/")


def opsgenie_base(target: Target, configured: str, default: str) -> str:
    if configured.rstrip("/") == default.rstrip("/") and target.region in OPSGENIE_REGIONS:
        return OPSGENIE_REGIONS[target.region]
    return configured.rstrip("/")


def send_pagerduty(target: Target, extra: Mapping[str, Any], title: str, timeout: float) -> DeliveryResult:
    base = pagerduty_base(target, extra["pagerduty_url"], "https://events.pagerduty.com")
    event = pagerduty_event(
        target, base, resolve=extra["status"] == "resolved", dedup_key=extra["dedup_key"], summary=title,
        severity=extra.get("severity", "error"), details=extra.get("details", {}), links=extra.get("links", []),
        timestamp=extra.get("timestamp", ""), group=extra.get("group", ""), klass=extra.get("class", ""),
        source=extra.get("source", "meshd"),
    )
    return post_json(f"{base}/v2/enqueue", event, {}, timeout)


def send_opsgenie(target: Target, extra: Mapping[str, Any], title: str, body: str, timeout: float) -> DeliveryResult:
    base = opsgenie_base(target, extra["opsgenie_api_url"], "https://api.opsgenie.com")
    alias = extra["dedup_key"][:OPSGENIE_ALIAS_MAX]
    headers = {"Authorization": f"GenieKey {target.key}"}
    if extra["status"] == "resolved":
        url = f"{base}/v2/alerts/{urllib.request.quote(alias, safe='')}/close?identifierType=alias"
        result = post_json(url, {"source": "meshd", "note": body[:25000]}, headers, timeout)
        if not result.ok and result.detail.startswith("http_404"):
            return DeliveryResult(True, detail="http_404: nothing open under this alias")
        return result
    payload = {
        "message": title[:130],
        "alias": alias,
        "description": body[:15000],
        "priority": OG_PRIORITY.get(extra.get("severity", ""), "P3"),
        "source": extra.get("source", "meshd")[:100],
        "tags": ["meshd", *[str(v)[:50] for v in extra.get("tags", [])]][:20],
        "details": {k: str(v)[:1000] for k, v in dict(extra.get("labels", {})).items()},
    }
    return post_json(f"{base}/v2/alerts", payload, headers, timeout)


# ---------------------------------------------------------------- apprise


class _ThreadLogCapture(logging.Handler):
    """Collects apprise's warnings per thread, so a worker thread can read why its own send failed."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._lock = threading.Lock()
        self._by_thread: dict[int, list[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            bucket = self._by_thread.get(record.thread or 0)
            if bucket is not None and len(bucket) < 20:
                bucket.append(record.getMessage())

    def start(self) -> None:
        with self._lock:
            self._by_thread[threading.get_ident()] = []

    def stop(self) -> list[str]:
        with self._lock:
            return self._by_thread.pop(threading.get_ident(), [])


_capture_lock = threading.Lock()
_capture: _ThreadLogCapture | None = None


def _apprise_capture() -> _ThreadLogCapture:
    # One handler per process (not per daemon): it is keyed by thread, and
    # the "apprise" logger is process-wide anyway.
    global _capture
    with _capture_lock:
        if _capture is None:
            _capture = _ThreadLogCapture()
            logger = logging.getLogger("apprise")
            logger.addHandler(_capture)
            if logger.level == logging.NOTSET or logger.level > logging.WARNING:
                logger.setLevel(logging.WARNING)
            # Every failed attempt makes apprise log a line; the delivery worker
            # logs one per state change instead, with the receiver's name.
            logger.propagate = False
        return _capture


_HTTP_CODE = re.compile(r"error(?:=| code )(\d{3})\b")


def classify_apprise(ok: bool, messages: list[str]) -> DeliveryResult:
    if ok:
        return DeliveryResult(True, detail="sent")
    text = " | ".join(messages)[-400:]
    for message in reversed(messages):
        m = _HTTP_CODE.search(message)
        if m:
            return from_status(int(m.group(1)), None, text)
    lowered = text.lower()
    if "timed out" in lowered or "timeout" in lowered:
        return DeliveryResult(False, retryable=True, detail=f"timeout: {text}")
    if "connection" in lowered or "socket" in lowered:
        return DeliveryResult(False, retryable=True, detail=f"connection: {text}")
    # Unknown: retry; a real misconfiguration then ends in give_up_after and NotifierBroken.
    return DeliveryResult(False, retryable=True, detail=f"error: {text or 'apprise reported a failure'}")


def send_apprise(target: Target, title: str, body: str, notify_type: str, timeout: float) -> DeliveryResult:
    import apprise

    capture = _apprise_capture()
    capture.start()
    try:
        instance = apprise.Apprise.instantiate(target.url)
        if instance is None:
            return DeliveryResult(False, retryable=False, detail="invalid_url: apprise does not understand this URL")
        instance.request_rate_per_sec = 0  # no throttle sleeps: the outbox paces and retries
        if hasattr(instance, "retry"):
            instance.retry = 0
        instance.socket_connect_timeout = max(0.5, min(4.0, timeout * 0.4))
        instance.socket_read_timeout = max(0.5, timeout * 0.8)
        ok = bool(instance.notify(body=body, title=title, notify_type=apprise.NotifyType(notify_type)))
    except Exception as exc:  # a plugin bug in apprise must not end the worker
        capture.stop()
        return DeliveryResult(False, retryable=True, detail=f"error: {type(exc).__name__}")
    return classify_apprise(ok, capture.stop())


def apprise_type(status: str, severity: str) -> str:
    if status == "resolved":
        return "success"
    return {"critical": "failure", "error": "failure", "warning": "warning"}.get(severity, "info")
