"""The plain-text view of a daemon's status document (``meshd status``).

It reads only the document (``/status``): the membership, health and
failover plugins' parts as they publish them, never their internals. Every
region of the map gets a row, the ones never heard from too; a region's
health is shown only while it is alive (a dead region's last word is not
its health now); committed failovers in force are listed with where the
traffic went, since when, and what brings it back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from .cli import render_table
from .i18n import Translator

HEALTH_VALUES = ("healthy", "degraded", "down")
HEARD_HEALTH = ("alive", "isolated")
"""Member states whose health verdict is current (isolated: this daemon, about itself)."""


def _age(t: Translator, last_heard: float | None, now: float) -> str:
    return "-" if last_heard is None else t.duration(max(0.0, now - last_heard))


def health_text(t: Translator, member: dict[str, Any]) -> str:
    health = member.get("health")
    if member.get("state") not in HEARD_HEALTH or health not in HEALTH_VALUES:
        return t("cli.health.unknown")
    return t(f"cli.health.{health}")


def members_table(t: Translator, members: Sequence[dict[str, Any]], regions: Iterable[str], now: float) -> str:
    """One row per region of the map: members as seen, then the regions never heard from."""
    by_region = {m.get("region"): m for m in members}
    rows = [
        [m.get("region"), t(f"cli.member_state.{m.get('state')}"), m.get("incarnation"),
         _age(t, m.get("last_heard"), now), health_text(t, m),
         "-" if m.get("rtt_ms") is None else t.number(m["rtt_ms"], 1)]
        for m in members
    ]
    rows += [[r, t("cli.member_state.never_heard"), "-", "-", t("cli.health.unknown"), "-"]
             for r in regions if r not in by_region]
    rows.sort(key=lambda row: str(row[0]))
    headers = [t("cli.status.col.region"), t("cli.status.col.state"), t("cli.status.col.incarnation"),
               t("cli.status.col.last_heard"), t("cli.status.col.health"), t("cli.status.col.rtt")]
    return render_table(headers, rows)


def _since(t: Translator, epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return t.datetime(datetime.fromtimestamp(epoch, tz=UTC)) + " UTC"


def failovers(t: Translator, doc: dict[str, Any]) -> list[str]:
    """Lines about every failover in force, from the failover plugin's ``failover`` and ``decisions``."""
    failover = doc.get("failover")
    if not isinstance(failover, dict):
        return []
    latest: dict[str, dict[str, Any]] = {}
    for decision in doc.get("decisions") or []:
        if decision.get("action") == "failover":
            latest[decision.get("region")] = decision  # oldest first: the last one is in force
    lines = []
    for region, view in sorted((failover.get("regions") or {}).items()):
        if view.get("state") != "failed_over":
            continue
        decision = latest.get(region, {})
        values = {"region": region, "target": view.get("target"), "term": view.get("term"),
                  "since": _since(t, decision.get("committed_at"))}
        lines.append("  " + t("cli.failover.to" if view.get("target") else "cli.failover.nowhere", **values))
        vote = view.get("open") or {}
        if vote.get("action") == "failback":
            back = t("cli.failover.back_open", yes=len(vote.get("yes") or []), quorum=failover.get("quorum"))
        elif decision.get("flapping"):
            back = t("cli.failover.back_flapping", region=region)
        elif failover.get("failback") != "auto" or decision.get("manual"):
            back = t("cli.failover.back_manual", region=region)
        else:
            back = t("cli.failover.back_auto", region=region,
                     hold_down=t.exact_duration(float(failover.get("hold_down_s") or 0)))
        lines.append("    " + back)
    return ([t("cli.failover.header")] + lines) if lines else []


def render(t: Translator, doc: dict[str, Any], regions: Iterable[str], now: float) -> str:
    bus = t("cli.status.connected") if (doc.get("bus") or {}).get("connected") else t("cli.status.disconnected")
    lines = [t("cli.status.header", region=doc.get("region"), federation=doc.get("federation"),
               state=t(f"cli.daemon_state.{doc.get('state')}"), bus=bus)]
    if "members" in doc:
        lines.append(members_table(t, doc.get("members") or [], regions, now))
    lines += failovers(t, doc)
    return "\n".join(lines)
