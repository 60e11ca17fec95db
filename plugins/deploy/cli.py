"""``meshd deploy start|status|promote|pause|resume|abort|history``: canary rollouts through the local daemon.

Exit codes: 0 done, 1 a failure (daemon unreachable, a rollout that ended
rolled back with ``start --wait``), 2 bad input or a refused request (an
unknown service or region, a freeze window, a rollout already running).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
BAD_INPUT = {"unknown_service", "unknown_region", "bad_request", "frozen", "running", "not_running", "not_paused",
             "unknown"}
ACTIONS = ("promote", "pause", "resume", "abort")


def add_commands(subparsers: Any, t: Any) -> None:
    p = subparsers.add_parser("deploy", help=t("deploy.cli.help"), description=t("deploy.cli.description"))
    sub = p.add_subparsers(dest="deploy_command", metavar="COMMAND", required=True)

    s = sub.add_parser("start", help=t("deploy.cli.start.help"))
    s.add_argument("service", help=t("deploy.cli.service"))
    s.add_argument("--version", required=True, help=t("deploy.cli.start.version"))
    where = s.add_mutually_exclusive_group(required=True)
    where.add_argument("--region", help=t("deploy.cli.start.region"))
    where.add_argument("--pipeline", action="store_true", help=t("deploy.cli.start.pipeline"))
    s.add_argument("--json", action="store_true", help=t("deploy.cli.json"))
    s.add_argument("--config", help=t("cli.opt.config"))
    s.set_defaults(handler=cmd_start)

    st = sub.add_parser("status", help=t("deploy.cli.status.help"))
    st.add_argument("service", nargs="?", help=t("deploy.cli.service"))
    st.add_argument("--json", action="store_true", help=t("deploy.cli.json"))
    st.add_argument("--watch", action="store_true", help=t("deploy.cli.status.watch"))
    st.add_argument("--interval", type=float, default=1.0, help=t("deploy.cli.status.interval"))
    st.add_argument("--config", help=t("cli.opt.config"))
    st.set_defaults(handler=cmd_status)

    for action in ACTIONS:
        a = sub.add_parser(action, help=t(f"deploy.cli.{action}.help"))
        a.add_argument("service", help=t("deploy.cli.service"))
        a.add_argument("--json", action="store_true", help=t("deploy.cli.json"))
        a.add_argument("--config", help=t("cli.opt.config"))
        a.set_defaults(handler=cmd_action, action=action)

    h = sub.add_parser("history", help=t("deploy.cli.history.help"))
    h.add_argument("service", nargs="?", help=t("deploy.cli.service"))
    h.add_argument("--json", action="store_true", help=t("deploy.cli.json"))
    h.add_argument("--config", help=t("cli.opt.config"))
    h.set_defaults(handler=cmd_history)

    from .smoke import add_smoke

    add_smoke(subparsers, t)


def _refused(ctx: Any, status: int, doc: Any) -> int:
    doc = doc if isinstance(doc, dict) else {}
    code = str(doc.get("code", ""))
    ctx.error(ctx.t("deploy.cli.refused", status=status, detail=str(doc.get("error", ""))))
    return EXIT_USAGE if code in BAD_INPUT else EXIT_FAILURE


def describe(t: Any, doc: dict[str, Any]) -> str:
    weights = ", ".join(f"{region} {weight} %" for region, weight in doc.get("weights", {}).items())
    line = t("deploy.cli.line", service=doc["service"], version=doc["version"], id=doc["id"],
             state=t(f"deploy.state.{doc['state']}"), stage=doc["stage"] + 1, stages=len(doc["stages"]),
             weights=weights or "-")
    return line + (f"\n  {doc['reason']}" if doc.get("reason") else "")


def cmd_start(args: argparse.Namespace, ctx: Any) -> int:
    config = ctx.load_config(args.config)
    body = {"service": args.service, "version": args.version, "region": args.region, "pipeline": args.pipeline}
    status, doc = ctx.call(config, "POST", "/v1/deploy/start", body)
    if status != 200:
        return _refused(ctx, status, doc)
    rollout = doc["rollout"]
    if args.json:
        ctx.print(json.dumps(rollout, indent=2))
    else:
        ctx.print(ctx.t("deploy.cli.started", service=rollout["service"], version=rollout["version"],
                        id=rollout["id"], regions=", ".join(r for stage in rollout["stages"] for r in stage)))
    return EXIT_OK


def cmd_status(args: argparse.Namespace, ctx: Any) -> int:
    config = ctx.load_config(args.config)
    path = "/v1/deploy" + (f"?service={args.service}" if args.service else "")
    while True:
        rollouts = show(ctx, ctx.get(config, path), args.json)
        if not args.watch or not any(r.get("active") for r in rollouts):
            return EXIT_OK
        time.sleep(args.interval)  # a live view for a person: poll the daemon, one screen per interval
        if not args.json:
            ctx.print("")


def cmd_action(args: argparse.Namespace, ctx: Any) -> int:
    config = ctx.load_config(args.config)
    status, doc = ctx.call(config, "POST", f"/v1/deploy/{args.service}/{args.action}", {})
    if status != 200:
        return _refused(ctx, status, doc)
    if args.json:
        ctx.print(json.dumps(doc["rollout"], indent=2))
    else:
        ctx.print(ctx.t(f"deploy.cli.{args.action}.done", service=args.service, id=doc["rollout"]["id"]))
    return EXIT_OK


def cmd_history(args: argparse.Namespace, ctx: Any) -> int:
    config = ctx.load_config(args.config)
    path = "/v1/deploy/history" + (f"?service={args.service}" if args.service else "")
    show(ctx, ctx.get(config, path), args.json)
    return EXIT_OK


def show(ctx: Any, doc: dict[str, Any], as_json: bool) -> list[dict[str, Any]]:
    """Print the rollouts of a daemon's answer, as JSON or one line each; return them."""
    rollouts: list[dict[str, Any]] = doc.get("rollouts", [])
    if as_json:
        ctx.print(json.dumps(rollouts, indent=2))
    elif not rollouts:
        ctx.print(ctx.t("deploy.cli.none"))
    else:
        ctx.print("\n".join(describe(ctx.t, r) for r in rollouts))
    return rollouts
