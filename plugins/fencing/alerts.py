"""RegionFenced: raised by the fenced region itself while its fence is up, resolved when it comes down.

Only the fenced daemon knows it is fenced, so only it raises the alert;
while it is cut off the alerts plugin keeps it in its durable outbox and
delivers it once the bus (or the receiver) is reachable again.
"""

from __future__ import annotations

import time

from meshd.alerting import Alert
from meshd.i18n import Translator

ALERT_NAME = "RegionFenced"


def labels(region: str) -> dict[str, str]:
    return {"alertname": ALERT_NAME, "severity": "critical", "region": region}


def fence_alert(t: Translator, region: str, fenced: bool, reason: str) -> Alert:
    """The alert to raise (``fenced``) or resolve for a change of this region's fence."""
    why = t(f"fencing.reason.{reason}", region=region)
    if fenced:
        return Alert(labels=labels(region),
                     annotations={"summary": t("fencing.alert.fenced.summary", region=region),
                                  "description": t("fencing.alert.fenced.description", region=region, why=why)},
                     starts_at=time.time())
    return Alert(labels=labels(region),
                 annotations={"summary": t("fencing.alert.unfenced.summary", region=region),
                              "description": t("fencing.alert.unfenced.description", region=region, why=why)},
                 status="resolved", ends_at=time.time())
