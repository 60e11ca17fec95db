"""``meshd failover REGION``, ``meshd failback REGION`` and ``meshd audit-log verify``.

Exit codes: 0 done; 1 a runtime failure (daemon unreachable, no decision in
time); 2 bad input (unknown region, a missing or blank ``--reason``, a
request the region's state does not allow, a failover that would strand a
residency without ``--force``, an audit log that does not verify).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from meshd.i18n import Translator

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
BAD_INPUT = {"unknown_region", "bad_reason", "already_failed_over", "not_failed_over", "not_alive", "no_target"}


def add_commands(subparsers: argparse._SubParsersAction, t: Translator) -> None:
    for action in ("failover", "failback"):
        p = subparsers.add_parser(action, help=t(f"failover.cli.{action}.help"))
        p.add_argument("region", metavar="REGION", help=t(f"failover.cli.{action}.region"))
        p.add_argument("--config", required=True, help=t("cli.opt.config"))
        p.add_argument("--reason", required=True, help=t("failover.cli.opt.reason"))
        if action == "failover":
            p.add_argument("--force", action="store_true", help=t("failover.cli.opt.force"))
        p.add_argument("--timeout", type=float, default=60.0, help=t("failover.cli.opt.timeout"))
        p.add_argument("--no-wait", action="store_true", help=t("failover.cli.opt.no_wait"))
        p.add_argument("--json", action="store_true", help=t("cli.opt.json"))
        p.set_defaults(handler=cmd_request, action=action)

    p = subparsers.add_parser("audit-log", help=t("failover.cli.audit.help"))
    sub = p.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)
    v = sub.add_parser("verify", help=t("failover.cli.audit.verify_help"))
    v.add_argument("--config", required=True, help=t("cli.opt.config"))
    v.add_argument("--file", help=t("failover.cli.audit.file"))
    v.add_argument("--json", action="store_true", help=t("cli.opt.json"))
    v.set_defaults(handler=cmd_audit_verify)


def _print_json(ctx: Any, obj: Any) -> None:
    ctx.print(json.dumps(obj, indent=2, ensure_ascii=False))


def cmd_request(args: argparse.Namespace, ctx: Any) -> int:
    from meshd.client import DaemonUnreachable

    t = ctx.t
    config = ctx.load_config(args.config)
    if args.region not in config.region_map.regions:
        ctx.error(t("failover.error.unknown_region", region=args.region,
                    known=", ".join(sorted(config.region_map.regions))))
        return EXIT_USAGE
    client = ctx.client(config)
    status, body = ctx.call(config, "POST", f"/v1/{args.action}/{args.region}",
                            {"reason": args.reason, "force": bool(getattr(args, "force", False))})
    if status != 202:
        code = (body or {}).get("error", "http") if isinstance(body, dict) else "http"
        params = (body or {}).get("params", {}) if isinstance(body, dict) else {}
        key = f"failover.error.{code}"
        text = t(key, **params) if t.has(key) or Translator("en").has(key) else t("failover.error.http",
                                                                                   status=status)
        ctx.error(text)
        return EXIT_USAGE if code in BAD_INPUT else EXIT_FAILURE
    term = body["term"]
    requesters, needed = body.get("requesters") or [], body.get("min_requesters", 1)
    if len(requesters) < needed and not args.json:
        ctx.print(t("failover.cli.needs_requesters", region=args.region, count=len(requesters), needed=needed,
                    requesters=", ".join(requesters)))
    if args.no_wait:
        if args.json:
            _print_json(ctx, {"requested": body})
        else:
            ctx.print(t("failover.cli.requested", action=args.action, region=args.region, term=term,
                        quorum=body.get("quorum")))
        return EXIT_OK
    deadline = time.monotonic() + args.timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            doc = client.get("/v1/failover")
        except DaemonUnreachable:
            doc = None
        if doc:
            last = doc
            for decision in doc.get("decisions", []):
                if decision["region"] == args.region and decision["term"] >= term \
                        and decision["action"] == args.action:
                    if args.json:
                        _print_json(ctx, decision)
                    else:
                        ctx.print(_describe(t, decision))
                    return EXIT_OK
        time.sleep(0.2)
    open_vote = ((last.get("failover") or {}).get("regions", {}).get(args.region) or {}).get("open") or {}
    ctx.error(t("failover.cli.timeout", action=args.action, region=args.region, seconds=t.number(args.timeout),
                yes=len(open_vote.get("yes", [])), quorum=(last.get("failover") or {}).get("quorum", "?")))
    return EXIT_FAILURE


def _describe(t: Translator, decision: dict[str, Any]) -> str:
    voters = ", ".join(decision.get("voters", []))
    if decision["action"] == "failback":
        return t("failover.cli.committed_failback", region=decision["region"], term=decision["term"], voters=voters)
    if decision.get("target") is None:
        return t("failover.cli.committed_no_target", region=decision["region"], term=decision["term"],
                 voters=voters)
    return t("failover.cli.committed_failover", region=decision["region"], target=decision["target"],
             term=decision["term"], voters=voters)


def cmd_audit_verify(args: argparse.Namespace, ctx: Any) -> int:
    from meshd.identity import TrustStore

    from .audit import HEAD_SUFFIX, verify

    t = ctx.t
    config = ctx.load_config(args.config)
    path = Path(args.file) if args.file else Path(config.daemon.state_dir) / "failover" / "audit.log"
    if not path.exists() and not Path(str(path) + HEAD_SUFFIX).exists():
        ctx.error(t("failover.audit.missing", path=path))
        return EXIT_FAILURE
    result = verify(path, trust=TrustStore(config.trust), region=config.region)
    if args.json:
        _print_json(ctx, {
            "path": str(path), "ok": result.ok, "entries": len(result.entries), "torn_tail": result.torn_tail,
            "head_signed_by": result.head_signed_by,
            "problem": None if result.ok else {"code": result.problem.code, "entry": result.problem.seq,
                                                "line": result.problem.line, "detail": result.problem.detail},
        })
        return EXIT_OK if result.ok else EXIT_USAGE
    if result.problem is not None:
        p = result.problem
        ctx.error(t("failover.audit.failed", path=path, problem=t(f"failover.audit.problem.{p.code}", **p.params)))
        return EXIT_USAGE
    ctx.print(t("failover.audit.ok", path=path, count=len(result.entries), region=result.head_signed_by or "-"))
    if result.torn_tail:
        ctx.print(t("failover.audit.torn"))
    return EXIT_OK
