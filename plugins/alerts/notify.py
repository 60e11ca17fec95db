"""The builtin ``meshd_notify``: one notification to one URL, in a worker thread, under a hard deadline."""

from __future__ import annotations

from functools import partial

import anyio

from meshd.alerting import DeliveryResult, Notification

from .alertmanager import send_alertmanager
from .senders import send_apprise, send_opsgenie, send_pagerduty
from .targets import TargetError, parse_target

DEFAULT_TIMEOUT = 10.0


def send_blocking(notification: Notification, timeout: float) -> DeliveryResult:
    """Deliver ``notification`` to its first URL (blocking; meant for a worker thread)."""
    if not notification.urls:
        return DeliveryResult(False, retryable=False, detail="invalid_url: the notification has no URL")
    extra = {"status": notification.status, "dedup_key": f"meshd-{notification.group_key}"[:255],
             "pagerduty_url": "https://events.pagerduty.com", "opsgenie_api_url": "https://api.opsgenie.com",
             **notification.extra}
    try:
        target = parse_target(notification.urls[0], int(extra.get("target", 0)))
    except TargetError as exc:
        return DeliveryResult(False, retryable=False, detail=f"invalid_url: {exc}")
    if target.kind == "pagerduty":
        return send_pagerduty(target, extra, notification.title, timeout)
    if target.kind == "alertmanager":
        return send_alertmanager(target, list(extra.get("alertmanager_alerts", [])), timeout)
    if target.kind == "opsgenie":
        return send_opsgenie(target, extra, notification.title, notification.body, timeout)
    return send_apprise(target, notification.title, notification.body, str(extra.get("notify_type", "info")),
                        timeout)


async def deliver(notification: Notification, limiter: anyio.CapacityLimiter) -> DeliveryResult:
    """Run :func:`send_blocking` off the event loop; a send past its deadline is abandoned and retried later.

    The thread cannot be killed, but its sockets time out a little before
    the deadline (connect and read timeouts are set from it), so abandoned
    threads end on their own.
    """
    timeout = float(notification.extra.get("timeout", DEFAULT_TIMEOUT))
    with anyio.move_on_after(timeout) as scope:
        return await anyio.to_thread.run_sync(partial(send_blocking, notification, timeout),
                                              abandon_on_cancel=True, limiter=limiter)
    assert scope.cancelled_caught
    return DeliveryResult(False, retryable=True, detail=f"timeout: no answer within {timeout:.1f}s")
