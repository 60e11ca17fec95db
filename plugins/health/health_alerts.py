"""The alerts the health plugin raises: ProbeFailing per failing probe, RegionHealthDegraded per region.

Labels identify an alert, so a change of severity is a different alert: the
old one is resolved and the new one raised (as Prometheus rules with
separate warning and critical alerts do).

* ``ProbeFailing`` {region, probe, kind, severity}: severity is ``critical``
  only for a probe with ``severity: critical`` in the ``critical`` state,
  ``warning`` otherwise (a critical service answering slowly warns, it does
  not page).
* ``RegionHealthDegraded`` {region, severity}: ``warning`` when the region
  is degraded, ``critical`` when it is down.
"""

from __future__ import annotations

from collections.abc import Iterable

from meshd import Alert, HealthReport, HealthStatus, Translator

from .hysteresis import ProbeState


def probe_alert(t: Translator, region: str, *, name: str, kind: str, severity: str, state: ProbeState,
                error: str | None, runbook_url: str | None) -> Alert:
    level = "critical" if severity == "critical" and state is ProbeState.CRITICAL else "warning"
    annotations = {
        "summary": t("health.alert.probe_failing.summary", probe=name, region=region),
        "description": t("health.alert.probe_failing.description", probe=name, kind=kind,
                         state=t(f"health.state.{state.value}"), error=error or "-"),
    }
    if runbook_url:
        annotations["runbook_url"] = runbook_url
    return Alert(labels={"alertname": "ProbeFailing", "severity": level, "region": region, "probe": name,
                         "kind": kind}, annotations=annotations)


def region_alert(t: Translator, region: str, report: HealthReport) -> Alert:
    level = "critical" if report.status is HealthStatus.DOWN else "warning"
    return Alert(
        labels={"alertname": "RegionHealthDegraded", "severity": level, "region": region},
        annotations={
            "summary": t("health.alert.region_degraded.summary", region=region,
                         status=t(f"health.status.{report.status.value}")),
            "description": t("health.alert.region_degraded.description", region=region,
                             reasons=", ".join(report.reasons)),
        },
    )


def resolved(alert: Alert, t: Translator) -> Alert:
    """The resolve of a firing alert: the same labels, ``status="resolved"``."""
    summary = t("health.alert.resolved", summary=alert.annotations.get("summary", alert.name))
    return Alert(labels=alert.labels, annotations={**alert.annotations, "summary": summary}, status="resolved")


def by_fingerprint(alerts: Iterable[Alert]) -> dict[str, Alert]:
    return {a.fingerprint: a for a in alerts}
