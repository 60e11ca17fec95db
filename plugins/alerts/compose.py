"""From a stored notification content to the :class:`meshd.Notification` one receiver URL gets."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from meshd.alerting import Alert, Notification
from meshd.i18n import Translator

from .alertmanager import postable_alerts
from .routes import DEFAULT_REPEAT_INTERVAL, Receiver
from .senders import apprise_type
from .targets import Target
from .templates import AlertView, render, summarize_alert, views

SEVERITY_ORDER = ("critical", "error", "warning", "info")


def worst_severity(alerts: list[AlertView]) -> str:
    found = {a.labels.get("severity", "") for a in alerts}
    for severity in SEVERITY_ORDER:
        if severity in found:
            return severity
    return "error"


def _iso(epoch: float | None) -> str:
    if not epoch:
        return ""
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat().replace("+00:00", "Z")


def compose(content: Mapping[str, Any], *, key: str, receiver: Receiver, target: Target, t: Translator,
            region: str, federation: str, repeat_interval: float = DEFAULT_REPEAT_INTERVAL,
            now: float | None = None) -> Notification:
    """The notification for ``target`` of ``receiver`` about the group in ``content``."""
    firing = views(content, content.get("firing", []), status="firing")
    resolved = views(content, content.get("resolved", []), status="resolved", silenced=content.get("silenced"))
    if not receiver.send_resolved:
        resolved = []
    group_labels = dict(content.get("group_labels", {}))
    title_limit = receiver.max_title or target.title_limit
    body_limit = receiver.max_body or target.body_limit
    rendered = render(t, firing=firing, resolved=resolved, group_labels=group_labels,
                      max_alerts=receiver.max_alerts, title_limit=title_limit,
                      body_limit=body_limit if title_limit > 0 else max(64, body_limit - 256),
                      region=region, federation=federation)
    status = "firing" if content.get("firing") else "resolved"
    shown = firing or resolved
    severity = worst_severity(shown)
    names = sorted({a.name for a in shown if a.name})
    details = {
        "firing": [{"summary": summarize_alert(t, a), "labels": dict(a.labels), "starts_at": _iso(a.starts_at)}
                   for a in firing[: receiver.max_alerts]],
        "resolved": [{"summary": summarize_alert(t, a), "labels": dict(a.labels), "ends_at": _iso(a.ends_at),
                      **({"silenced": a.silenced} if a.silenced else {})} for a in resolved[: receiver.max_alerts]],
        "num_firing": len(content.get("firing", [])),
        "num_resolved": len(content.get("resolved", [])),
        "group": group_labels,
        "sent_by": region,
        "federation": federation,
    }
    extra: dict[str, Any] = {
        "status": status,
        "dedup_key": f"meshd-{key}",
        "severity": severity,
        "pagerduty_url": receiver.pagerduty_url,
        "opsgenie_api_url": receiver.opsgenie_api_url,
        "timeout": receiver.timeout,
        "group": ",".join(f"{k}={v}" for k, v in sorted(group_labels.items())),
        "class": ",".join(names),
        "source": f"meshd/{federation}",
        "timestamp": _iso(min((a.starts_at for a in shown if a.starts_at), default=None)),
        "links": sorted({a.annotations["runbook_url"] for a in shown if a.annotations.get("runbook_url")}),
        "details": details,
        "labels": group_labels,
        "tags": names,
        "notify_type": apprise_type(status, severity),
        "target": target.index,
        "sent_by": region,
    }
    if target.kind == "alertmanager":
        # Every alert of the group, none cut to max_alerts: Alertmanager keeps the state of each one.
        extra["alertmanager_alerts"] = postable_alerts(
            firing, resolved, group_labels, now=time.time() if now is None else now,
            repeat_interval=repeat_interval, generator_url=f"meshd://{federation}/{region}")
    alerts = tuple(Alert(labels=dict(a.labels), annotations=dict(a.annotations),
                         status="firing" if a.status == "firing" else "resolved",
                         starts_at=a.starts_at, ends_at=a.ends_at) for a in shown)
    return Notification(receiver=receiver.name, group_key=str(content.get("group_key", "")), status=status,
                        alerts=alerts, title=rendered.title, body=rendered.body, urls=(target.url,),
                        lang=receiver.lang, extra=extra)
