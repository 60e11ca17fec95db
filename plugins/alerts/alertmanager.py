"""``alertmanager://``: hand a group's alerts to an existing Prometheus Alertmanager cluster.

meshd posts to Alertmanager's v2 API (``POST /api/v2/alerts``) what Prometheus
would: every alert of the group with its labels (``alertname``, ``region``,
``severity``, the group labels), annotations, ``startsAt`` and ``endsAt``.
A resolved alert carries the time it ended as ``endsAt``. A firing one carries
an ``endsAt`` a few repeat intervals ahead, as Prometheus does: meshd resends
firing groups every ``repeat_interval``, so the alert stays active while meshd
keeps telling, and ends on its own if the whole federation stops telling.

A receiver lists one URL per Alertmanager of the cluster; each is posted to
and retried on its own (Alertmanager peers deduplicate between them), so an
instance that was down gets the alerts once it is back.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from meshd.alerting import DeliveryResult

from .senders import post_json
from .targets import Target
from .templates import AlertView

VALID_FOR_REPEATS = 4
"""A firing alert's endsAt lies this many repeat intervals ahead (Prometheus: 4 resend delays)."""


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def postable_alerts(firing: Sequence[AlertView], resolved: Sequence[AlertView], group_labels: Mapping[str, str],
                    *, now: float, repeat_interval: float, generator_url: str) -> list[dict[str, Any]]:
    """The ``postableAlerts`` body for one group: every firing and every resolved alert, none cut."""
    out = []
    for alert, is_firing in [*((a, True) for a in firing), *((a, False) for a in resolved)]:
        labels = {**{k: str(v) for k, v in group_labels.items()}, **{k: str(v) for k, v in alert.labels.items()}}
        if is_firing:
            ends = now + VALID_FOR_REPEATS * repeat_interval
        else:
            ends = min(alert.ends_at or now, now)
        item: dict[str, Any] = {
            "labels": labels,
            "annotations": {k: str(v) for k, v in alert.annotations.items()},
            "endsAt": iso(ends),
            "generatorURL": str(alert.annotations.get("generator_url", "")) or generator_url,
        }
        if alert.starts_at:
            item["startsAt"] = iso(min(alert.starts_at, ends))
        out.append(item)
    return out


def send_alertmanager(target: Target, alerts: list[dict[str, Any]], timeout: float) -> DeliveryResult:
    """Post ``alerts`` to one Alertmanager; 2xx done, 5xx/429/timeouts retried, other 4xx final."""
    headers = {}
    if target.key:
        headers["Authorization"] = "Basic " + base64.b64encode(target.key.encode()).decode()
    return post_json(target.endpoint, alerts, headers, timeout)
