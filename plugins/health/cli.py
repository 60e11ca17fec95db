"""``meshd health --config PATH [--json]``: the running daemon's probes and verdict."""

from __future__ import annotations

import argparse
import time
from typing import Any

from meshd.cli import EXIT_FAILURE, EXIT_OK, Context, render_table
from meshd.i18n import Translator


def add_commands(subparsers: argparse._SubParsersAction, t: Translator) -> None:
    p = subparsers.add_parser("health", help=t("health.cli.help"))
    p.add_argument("--config", help=t("cli.opt.config"))
    p.add_argument("--json", action="store_true", help=t("health.cli.json"))
    p.set_defaults(handler=cmd_health)


def format_value(t: Translator, value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return t("health.cli.unit_ms", value=t.number(value * 1000, 1))
    if unit == "%":
        return t("health.cli.unit_percent", value=t.number(value, 1))
    return t.number(value, 2) if value != int(value) else t.number(int(value))


def _age(t: Translator, when: float | None, now: float) -> str:
    return "-" if when is None else t.duration(max(0.0, now - when))


def render(t: Translator, region: str, health: dict[str, Any], now: float) -> str:
    """The human view of a ``health`` status document."""
    status = health.get("status") or "-"
    lines = [t("health.cli.header", region=region, status=t(f"health.status.{status}"))]
    fence = health.get("fenced")
    if isinstance(fence, dict):
        verdict = health.get("verdict") or "-"
        lines.append(t("health.cli.fenced", reason=t(f"fencing.reason.{fence.get('reason')}", region=region),
                       verdict=t(f"health.status.{verdict}")))
    if health.get("reasons"):
        lines.append(t("health.cli.reasons", reasons=", ".join(health["reasons"])))
    probes = health.get("probes") or []
    if not probes:
        lines.append(t("health.cli.no_probes"))
        return "\n".join(lines)
    rows = []
    for p in probes:
        streak = f"{p['streak']}/{p['streak_needed']}" if p.get("streak") else "-"
        rows.append([p["name"], p["kind"], t(f"health.severity.{p['severity']}"), t(f"health.state.{p['state']}"),
                     format_value(t, p.get("last_value"), p.get("unit", "")), streak,
                     _age(t, p.get("last_checked"), now), p.get("last_error") or ""])
    headers = [t("health.cli.col.probe"), t("health.cli.col.kind"), t("health.cli.col.severity"),
               t("health.cli.col.state"), t("health.cli.col.value"), t("health.cli.col.streak"),
               t("health.cli.col.checked"), t("health.cli.col.error")]
    lines.append(render_table(headers, rows))
    return "\n".join(lines)


def cmd_health(args: argparse.Namespace, ctx: Context) -> int:
    config = ctx.load_config(args.config)
    doc = ctx.get(config, "/status")
    health = doc.get("health") if isinstance(doc, dict) else None
    if not isinstance(health, dict):
        ctx.error(ctx.t("health.cli.absent", region=config.region))
        return EXIT_FAILURE
    ctx.show(health, args.json, lambda h: render(ctx.t, config.region, h, time.time()))
    return EXIT_OK
