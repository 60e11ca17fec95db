"""``meshd route``: ask the running daemon where a tenant's request goes.

The daemon answers from its live view (membership, committed failovers)
through ``GET /v1/route``. With ``--offline`` the answer comes from the
config files alone: every region is taken as alive and nothing as failed
over, which the output says plainly.

Exit codes: 0 routed; 2 bad input (unknown tenant or location, sovereignty
conflict, invalid config); 1 no eligible region, a daemon not ready to route
yet, or no daemon answering.
"""

from __future__ import annotations

import argparse
import json
from typing import Any
from urllib.parse import urlencode

from meshd.i18n import Translator

from . import api
from .engine import RoutingEngine

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
RUNTIME_ERRORS = {"no_eligible_region", "not_ready", "internal_error"}


def add_commands(subparsers: argparse._SubParsersAction, t: Translator) -> None:
    p = subparsers.add_parser("route", help=t("routing.cli.help"), description=t("routing.cli.description"))
    p.add_argument("--config", required=True, help=t("cli.opt.config"))
    p.add_argument("--tenant", required=True, help=t("routing.cli.tenant"))
    p.add_argument("--from", dest="origin", required=True, metavar="LOCATION", help=t("routing.cli.from"))
    p.add_argument("--sovereignty", metavar="JURISDICTION", help=t("routing.cli.sovereignty"))
    p.add_argument("--session", help=t("routing.cli.session"))
    p.add_argument("--offline", action="store_true", help=t("routing.cli.offline"))
    p.add_argument("--json", action="store_true", help=t("routing.cli.json"))
    p.set_defaults(handler=cmd_route)


def offline_answer(config: Any, body: dict[str, Any]) -> dict[str, Any]:
    """The answer from the config files alone (all regions up, no failover)."""
    from .config import rtt_table

    section = config.plugin("routing")
    engine = RoutingEngine(config.region_map.regions, config.tenants, settings=section.settings(),
                           rtt=rtt_table(section), places=section.places(), local_region=config.region)
    return api.answer(engine, body, answered_by=config.region, view="offline")


def cmd_route(args: argparse.Namespace, ctx: Any) -> int:
    t: Translator = ctx.t
    config = ctx.load_config(args.config)
    body = {"tenant": args.tenant, "from": args.origin,
            "sovereignty": args.sovereignty.upper() if args.sovereignty else None, "session": args.session}
    if args.offline:
        reply = offline_answer(config, body)
    else:
        query = urlencode({k: v for k, v in body.items() if v is not None})
        status, reply = ctx.call(config, "GET", f"/v1/route?{query}", unreachable_key="routing.cli.unreachable")
        if status == 404 or not isinstance(reply, dict) or "ok" not in reply:
            ctx.error(t("routing.cli.no_service", region=config.region, status=status))
            return EXIT_FAILURE
    if args.json:
        ctx.print(json.dumps(reply, indent=2, ensure_ascii=False))
    elif reply["ok"]:
        ctx.print(render_result(t, reply))
    else:
        ctx.error(render_error(t, reply))
    if reply["ok"]:
        return EXIT_OK
    return EXIT_FAILURE if reply.get("error") in RUNTIME_ERRORS else EXIT_USAGE


def _location(reply: dict[str, Any]) -> str:
    origin = reply.get("from")
    return ",".join(str(x) for x in origin) if isinstance(origin, list) else str(origin)


def render_result(t: Translator, reply: dict[str, Any]) -> str:
    lines = [
        t("routing.cli.routed", tenant=reply["tenant"], location=_location(reply), region=reply["region"]),
        "  " + t("routing.cli.endpoint", endpoint=reply["endpoint"]),
        "  " + t("routing.cli.latency", latency=t.number(reply["latency_ms"], 1),
                 source=t(f"routing.latency_source.{reply['latency_source']}")),
        "  " + t("routing.cli.reason", reason=t(f"routing.reason.{reply['reason']}")),
    ]
    if reply.get("session"):
        lines.append("  " + t("routing.cli.session_line", session=reply["session"]))
    if reply.get("degraded"):
        lines.append(t("routing.cli.degraded"))
    if reply.get("fenced"):
        lines.append(fenced_note(t, reply))
    if reply.get("view") == "stale":
        lines.append(t("routing.cli.stale", region=reply.get("answered_by", "?")))
    elif reply.get("view") == "offline":
        lines.append(t("routing.cli.offline_note"))
    return "\n".join(lines)


def fenced_note(t: Translator, reply: dict[str, Any]) -> str:
    region = reply.get("answered_by", "?")
    return t("routing.cli.fenced", region=region, reason=t(f"fencing.reason.{reply['fenced']}", region=region))


def render_error(t: Translator, reply: dict[str, Any]) -> str:
    code = reply.get("error", "bad_request")
    if code == "no_eligible_region":
        excluded = reply.get("excluded") or {}
        if excluded:
            text = t("routing.error.no_eligible_region", residency=reply.get("residency", "?"),
                     excluded=", ".join(f"{r} ({t(f'routing.excluded.{why}')})" for r, why in sorted(excluded.items())))
        else:
            text = t("routing.error.no_region_in_jurisdiction", residency=reply.get("residency", "?"))
    elif code == "unknown_tenant":
        text = t("routing.error.unknown_tenant", tenant=reply.get("tenant", "?"))
    elif code == "unknown_location":
        text = t("routing.error.unknown_location", location=reply.get("location", _location(reply)))
    elif code == "sovereignty_conflict":
        text = t("routing.error.sovereignty_conflict", tenant=reply.get("tenant", "?"),
                 residency=reply.get("residency", "?"), sovereignty=reply.get("sovereignty", "?"))
    elif code == "not_ready":
        text = t("routing.error.not_ready", region=reply.get("answered_by", "?"),
                 reasons="; ".join(t(key) for key in reply.get("waiting_for") or ()))
    elif code == "internal_error":
        text = t("routing.error.internal_error", region=reply.get("answered_by", "?"))
    else:
        text = t("routing.error.bad_request", field=reply.get("field", "?"))
    if reply.get("fenced"):
        text += "\n" + fenced_note(t, reply)
    if reply.get("view") == "offline":
        text += "\n" + t("routing.cli.offline_note")
    return text
