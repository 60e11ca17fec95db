"""Alerts raised by plugins and the notifications that carry them to people."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Alert:
    """One alert, shaped like Prometheus Alertmanager's.

    ``labels`` identify it (``alertname``, ``severity``, ``region``...);
    ``annotations`` describe it (``summary``, ``description``, ``runbook_url``).
    Raising the same labels again refreshes it; ``status="resolved"`` ends it.
    """

    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    status: Literal["firing", "resolved"] = "firing"
    starts_at: float | None = None
    ends_at: float | None = None

    @property
    def fingerprint(self) -> str:
        """A stable hash of the labels: the same alert from any daemon has the same fingerprint."""
        raw = json.dumps(sorted(self.labels.items()), separators=(",", ":")).encode()
        return hashlib.sha256(raw).hexdigest()[:16]

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")


@dataclass(frozen=True)
class Notification:
    """A message for one receiver about one alert group."""

    receiver: str
    group_key: str
    status: Literal["firing", "resolved"]
    alerts: tuple[Alert, ...]
    title: str
    body: str
    urls: tuple[str, ...] = ()
    lang: str = "en"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DeliveryResult:
    """What a notifier made of one delivery attempt."""

    ok: bool
    retryable: bool = False
    retry_after: float | None = None
    detail: str = ""
