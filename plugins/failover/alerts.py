"""The alerts a committed decision raises: FailoverCommitted, FailbackCommitted, FailoverNoTarget.

Every daemon raises them when it applies a decision (the alerts plugin
dedups across the federation). A failback resolves the region's failover
alert; the next failover resolves its failback alert.
"""

from __future__ import annotations

from meshd.alerting import Alert
from meshd.i18n import Translator

from .records import Record


def _description(t: Translator, record: Record, configured: int) -> str:
    voters = ", ".join(record.voters)
    base = t("failover.alert.votes", region=record.region, term=record.term, count=len(record.voters),
             configured=configured, voters=voters)
    if record.action == "failback":
        return base
    if record.target is None:
        return base + " " + t("failover.alert.tier.none", region=record.region)
    extra = ""
    if record.flapping:
        extra = " " + t("failover.alert.flapping", region=record.region)
    elif record.manual:
        extra = " " + t("failover.alert.manual", region=record.region)
    return base + " " + t(f"failover.alert.tier.{record.tier or 'list'}", region=record.region,
                          target=record.target) + extra


def decision_alert(t: Translator, record: Record, configured: int) -> Alert:
    """The firing alert for a committed decision."""
    if record.action == "failback":
        name = "FailbackCommitted"
        summary = t("failover.alert.failback_summary", region=record.region, term=record.term)
    elif record.target is None:
        name = "FailoverNoTarget"
        summary = t("failover.alert.no_target_summary", region=record.region, term=record.term)
    else:
        name = "FailoverCommitted"
        summary = t("failover.alert.failover_summary", region=record.region, target=record.target,
                    term=record.term)
    return Alert(
        labels={"alertname": name, "severity": "critical", "region": record.region,
                "target": record.target or "none"},
        annotations={"summary": summary, "description": _description(t, record, configured)},
        starts_at=record.committed_at,
    )


def resolved(alert: Alert, at: float) -> Alert:
    return Alert(labels=dict(alert.labels), annotations=dict(alert.annotations), status="resolved",
                 starts_at=alert.starts_at, ends_at=at)
