"""Notification text: per receiver language, a group summarized rather than dumped, cut to the service's limits.

Titles and bodies come from ``locales/<lang>/alerts.yaml``. An alert whose
name has a summary in the catalog (``alerts.summary.RegionDown: "Region
{region} is down"``) is described in the receiver's language from its
labels; any other alert falls back to its ``summary`` annotation, which the
raising plugin wrote. Descriptions and runbook links are passed through.
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from meshd.i18n import Translator, catalog

ELLIPSIS = "…"


@dataclass(frozen=True)
class AlertView:
    """An alert as a notification shows it."""

    fingerprint: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    status: str
    starts_at: float | None
    ends_at: float | None
    silenced: str = ""
    """Why a still-firing alert is reported as resolved: the silence's comment and author."""

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")


@dataclass(frozen=True)
class Rendered:
    title: str
    body: str
    summary: str
    """One line for services with a single short field (PagerDuty summary, Opsgenie message)."""


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def summarize_alert(t: Translator, alert: AlertView) -> str:
    """One line saying what the alert is, in ``t``'s language when the catalog knows its name."""
    key = f"alerts.summary.{alert.name}"
    if alert.name and t.has(key):
        template = catalog(t.lang).get(key) or catalog("en")[key]
        values = {name: alert.labels.get(name, "?") for name in _placeholders(template)}
        return t(key, **values)
    summary = alert.annotations.get("summary", "").strip()
    if summary:
        return summary
    others = ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()) if k not in ("alertname", "severity"))
    return t("alerts.summary.generic", name=alert.name or "?", labels=others or "-")


def _when(t: Translator, epoch: float | None) -> str:
    if not epoch:
        return "?"
    return t.datetime(datetime.fromtimestamp(epoch, tz=UTC), "medium") + " UTC"


def _subject(t: Translator, alerts: Sequence[AlertView], group_labels: Mapping[str, str]) -> str:
    if len(alerts) == 1:
        return summarize_alert(t, alerts[0])
    names = Counter(a.name or "?" for a in alerts)
    parts = [f"{name} ×{count}" if count > 1 else name for name, count in sorted(names.items())]
    scope = ", ".join(f"{k}={v}" for k, v in sorted(group_labels.items()) if k != "alertname")
    return ", ".join(parts) + (f" ({scope})" if scope else "")


def truncate_line(text: str, limit: int) -> str:
    """``text`` on one line, at most ``limit`` characters, with an ellipsis if cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)].rstrip() + ELLIPSIS


def truncate_body(t: Translator, body: str, limit: int) -> str:
    """``body`` cut at a line boundary to at most ``limit`` characters, saying it was cut."""
    if len(body) <= limit:
        return body
    marker = "\n" + t("alerts.body.truncated")
    room = max(0, limit - len(marker))
    cut = body[:room]
    newline = cut.rfind("\n")
    if newline > room // 2:
        cut = cut[:newline]
    return (cut.rstrip() + marker)[:limit]


def render(t: Translator, *, firing: Sequence[AlertView], resolved: Sequence[AlertView],
           group_labels: Mapping[str, str], max_alerts: int, title_limit: int, body_limit: int,
           region: str, federation: str) -> Rendered:
    """Title, body and one-line summary of one notification about one group."""
    status_firing = bool(firing)
    subject = _subject(t, list(firing) or list(resolved), group_labels)
    title = (t("alerts.title.firing", count=len(firing), subject=subject) if status_firing
             else t("alerts.title.resolved", subject=subject))
    lines: list[str] = []
    shown = 0

    def section(header: str, alerts: Sequence[AlertView], is_firing: bool) -> None:
        nonlocal shown
        if not alerts:
            return
        if lines:
            lines.append("")
        lines.append(header)
        listed = 0
        for alert in alerts:
            if shown >= max_alerts:
                break
            shown += 1
            listed += 1
            if is_firing:
                lines.append(f"• {summarize_alert(t, alert)} ({t('alerts.body.since', time=_when(t, alert.starts_at))})")
                description = alert.annotations.get("description", "").strip()
                if description:
                    lines.append(f"  {truncate_line(description, 500)}")
                runbook = alert.annotations.get("runbook_url", "").strip()
                if runbook:
                    lines.append(f"  {t('alerts.body.runbook', url=runbook)}")
            elif alert.silenced:
                lines.append(f"• {summarize_alert(t, alert)} ({t('alerts.body.silenced', reason=alert.silenced)})")
            else:
                lines.append(f"• {summarize_alert(t, alert)} ({t('alerts.body.resolved_at', time=_when(t, alert.ends_at))})")
        if listed < len(alerts):
            lines.append(t("alerts.body.more", count=len(alerts) - listed))

    section(t("alerts.body.firing", count=len(firing)), firing, True)
    section(t("alerts.body.resolved", count=len(resolved)), resolved, False)
    lines.append("")
    lines.append(t("alerts.body.footer", region=region, federation=federation))
    body = "\n".join(lines)
    if title_limit > 0:
        title = truncate_line(title, title_limit)
    return Rendered(title=title, body=truncate_body(t, body, body_limit), summary=truncate_line(title, 1024))


def views(content: Mapping[str, Any], fingerprints: Sequence[str], *, status: str,
          silenced: Mapping[str, str] | None = None) -> list[AlertView]:
    """AlertViews for ``fingerprints`` from a notification's stored content (unknown ones skipped)."""
    stored = content.get("alerts", {})
    out = []
    for fp in fingerprints:
        a = stored.get(fp)
        if a is None:
            continue
        out.append(AlertView(fp, a.get("labels", {}), a.get("annotations", {}), status, a.get("starts_at"),
                             a.get("ends_at"), (silenced or {}).get(fp, "")))
    return out
