"""RegionDown: raised when a region becomes dead in this daemon's view, resolved when it is back.

Every daemon that sees the death raises the same labels (alertname,
severity, region), so the alerts plugin can dedup them federation-wide into
one notification. A graceful leave is not an outage: ``left`` raises
nothing, and a dead region that then leaves resolves the alert.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from meshd.alerting import Alert
from meshd.i18n import Translator
from meshd.members import Member, MemberState

if TYPE_CHECKING:
    from .swim import Swim

ALERT_NAME = "RegionDown"


def labels(region: str) -> dict[str, str]:
    return {"alertname": ALERT_NAME, "severity": "critical", "region": region}


def region_alert(swim: Swim, member: Member, previous: Member | None) -> Alert | None:
    """The RegionDown alert to raise or resolve for this transition, or None."""
    if not swim.alerts_enabled or member.region == swim.region:
        return None
    t = Translator(swim.daemon.config.daemon.lang)
    was_dead = previous is not None and previous.state == MemberState.DEAD
    if member.state == MemberState.DEAD and not was_dead:
        floor, _ = swim.suspicion_bounds()
        return Alert(
            labels=labels(member.region),
            annotations={
                "summary": t("membership.alert.region_down.summary", region=member.region),
                "description": t("membership.alert.region_down.description", region=member.region,
                                 observer=swim.region, timeout=t.number(floor, 1)),
            },
            starts_at=time.time(),
        )
    if was_dead and member.state != MemberState.DEAD:
        return Alert(
            labels=labels(member.region),
            annotations={
                "summary": t("membership.alert.region_back.summary", region=member.region),
                "description": t("membership.alert.region_back.description", region=member.region,
                                 observer=swim.region, state=t(f"cli.member_state.{member.state.value}"),
                                 incarnation=member.incarnation),
            },
            status="resolved",
            ends_at=time.time(),
        )
    return None
