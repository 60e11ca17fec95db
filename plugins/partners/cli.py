"""``meshd partners add|list|key create|list|revoke|audit`` and ``meshd license verify``.

The partner commands go through the local daemon's admin API (token,
loopback only), like ``meshd invoice``: the daemon already holds the bus
connection and its credentials. ``license verify`` needs no daemon: a
license verifies offline against the trust bundle or one public key.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from meshd.cli import help_handler

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def add_commands(subparsers: Any, t: Any) -> None:
    from .apikeys import ROLES

    p = subparsers.add_parser("partners", help=t("partners.cli.help"), description=t("partners.cli.description"))
    sub = p.add_subparsers(dest="partners_command", metavar="COMMAND", parser_class=type(p))
    p.set_defaults(handler=help_handler(p))

    a = sub.add_parser("add", help=t("partners.cli.add.help"))
    a.add_argument("name", help=t("partners.cli.add.name"))
    a.add_argument("--id", help=t("partners.cli.add.id"))
    _common(a, t)
    a.set_defaults(handler=cmd_add)

    ls = sub.add_parser("list", help=t("partners.cli.list.help"))
    _common(ls, t)
    ls.set_defaults(handler=cmd_list)

    k = sub.add_parser("key", help=t("partners.cli.key.help"))
    ksub = k.add_subparsers(dest="key_command", metavar="COMMAND", parser_class=type(p))
    k.set_defaults(handler=help_handler(k))
    c = ksub.add_parser("create", help=t("partners.cli.key.create_help"))
    c.add_argument("partner", help=t("partners.cli.partner"))
    c.add_argument("--role", choices=ROLES, default="read", help=t("partners.cli.key.role"))
    _common(c, t)
    c.set_defaults(handler=cmd_key_create)
    kl = ksub.add_parser("list", help=t("partners.cli.key.list_help"))
    kl.add_argument("partner", help=t("partners.cli.partner"))
    _common(kl, t)
    kl.set_defaults(handler=cmd_key_list)
    r = ksub.add_parser("revoke", help=t("partners.cli.key.revoke_help"))
    r.add_argument("partner", help=t("partners.cli.partner"))
    r.add_argument("key_id", help=t("partners.cli.key.key_id"))
    _common(r, t)
    r.set_defaults(handler=cmd_key_revoke)

    au = sub.add_parser("audit", help=t("partners.cli.audit.help"))
    au.add_argument("--config", help=t("cli.opt.config"))
    au.add_argument("--file", help=t("partners.cli.audit.file"))
    au.add_argument("--json", action="store_true", help=t("partners.cli.json"))
    au.set_defaults(handler=cmd_audit)

    lic = subparsers.add_parser("license", help=t("partners.cli.license.help"))
    lsub = lic.add_subparsers(dest="license_command", metavar="COMMAND", parser_class=type(p))
    lic.set_defaults(handler=help_handler(lic))
    v = lsub.add_parser("verify", help=t("partners.cli.license.verify_help"))
    v.add_argument("token", help=t("partners.cli.license.token"))
    v.add_argument("--key", help=t("partners.cli.license.key"))
    v.add_argument("--config", help=t("cli.opt.config"))
    v.add_argument("--json", action="store_true", help=t("partners.cli.json"))
    v.set_defaults(handler=cmd_license_verify)


def _common(p: argparse.ArgumentParser, t: Any) -> None:
    p.add_argument("--config", help=t("cli.opt.config"))
    p.add_argument("--json", action="store_true", help=t("partners.cli.json"))



def _answer(ctx: Any, args: argparse.Namespace, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    config = ctx.load_config(args.config)
    return ctx.call(config, method, path, body, admin=True)


def _refused(ctx: Any, status: int, body: Any) -> int:
    detail = body.get("error", "") if isinstance(body, dict) else str(body)
    ctx.error(ctx.t("partners.cli.refused", status=status, detail=detail))
    return EXIT_FAILURE if status >= 500 else EXIT_USAGE


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def cmd_add(args: argparse.Namespace, ctx: Any) -> int:
    status, body = _answer(ctx, args, "POST", "/v1/partners", {"name": args.name, "id": args.id})
    if status != 201:
        return _refused(ctx, status, body)
    ctx.show(body, args.json, lambda b: ctx.t("partners.cli.add.done", id=b["id"], name=b["name"]))
    return EXIT_OK


def cmd_list(args: argparse.Namespace, ctx: Any) -> int:
    from meshd.cli import render_table

    status, body = _answer(ctx, args, "GET", "/v1/partners")
    if status != 200:
        return _refused(ctx, status, body)
    t = ctx.t
    ctx.show(body, args.json, lambda b: render_table(
        [t("partners.cli.col.id"), t("partners.cli.col.name"), t("partners.cli.col.keys"),
         t("partners.cli.col.created")],
        [[p["id"], p["name"], p["keys"], _when(p["created"])] for p in b["items"]]))
    return EXIT_OK


def cmd_key_create(args: argparse.Namespace, ctx: Any) -> int:
    status, body = _answer(ctx, args, "POST", f"/v1/partners/{args.partner}/keys", {"role": args.role})
    if status != 201:
        return _refused(ctx, status, body)
    ctx.show(body, args.json, lambda b: ctx.t("partners.cli.key.created", key_id=b["key_id"], role=b["role"],
                                              partner=b["partner"], key=b["key"]))
    return EXIT_OK


def cmd_key_list(args: argparse.Namespace, ctx: Any) -> int:
    from meshd.cli import render_table

    status, body = _answer(ctx, args, "GET", f"/v1/partners/{args.partner}/keys")
    if status != 200:
        return _refused(ctx, status, body)
    t = ctx.t
    ctx.show(body, args.json, lambda b: render_table(
        [t("partners.cli.col.key_id"), t("partners.cli.col.role"), t("partners.cli.col.created"),
         t("partners.cli.col.revoked")],
        [[k["key_id"], k["role"], _when(k["created"]), _when(k["revoked"])] for k in b["items"]]))
    return EXIT_OK


def cmd_key_revoke(args: argparse.Namespace, ctx: Any) -> int:
    status, body = _answer(ctx, args, "DELETE", f"/v1/partners/{args.partner}/keys/{args.key_id}")
    if status != 200:
        return _refused(ctx, status, body)
    ctx.show(body, args.json, lambda b: ctx.t("partners.cli.key.revoked", key_id=b["key_id"], partner=b["partner"]))
    return EXIT_OK


def cmd_audit(args: argparse.Namespace, ctx: Any) -> int:
    from meshd_plugins.failover.cli import cmd_audit_verify

    if not args.file:
        config = ctx.load_config(args.config)
        settings = config.plugin("partners")
        args.file = str(settings.audit_log or Path(config.daemon.state_dir) / "partners" / "audit.log")
    return cmd_audit_verify(args, ctx)


def cmd_license_verify(args: argparse.Namespace, ctx: Any) -> int:
    from .licenses import LicenseInvalid, read_public_key, verify

    t = ctx.t
    try:
        if args.key:
            claims = verify(args.token, key=read_public_key(Path(args.key)))
        else:
            config = ctx.load_config(args.config)
            claims = verify(args.token, trust=config.trust)
    except (OSError, ValueError) as exc:
        ctx.error(t("partners.cli.license.bad_key", path=args.key, detail=str(exc)))
        return EXIT_USAGE
    except LicenseInvalid as exc:
        if args.json:
            ctx.print(json.dumps({"valid": False, "reason": str(exc)}))
        else:
            ctx.error(t("partners.cli.license.invalid", reason=str(exc)))
        return EXIT_FAILURE
    if args.json:
        ctx.print(json.dumps({"valid": True, "claims": claims}, indent=2))
    else:
        ctx.print(t("partners.cli.license.valid", tenant=claims.get("tenant"), partner=claims.get("partner") or "-",
                    plan=claims.get("plan"), features=", ".join(claims.get("features") or []) or "-",
                    expires=_when(claims.get("exp")), issuer=claims.get("iss"), region=claims.get("region")))
    return EXIT_OK
