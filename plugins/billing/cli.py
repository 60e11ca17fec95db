"""``meshd invoice`` (issue a tenant's invoice for a month) and ``meshd invoice credit`` (a credit note)."""

from __future__ import annotations

import argparse
import json
from decimal import Decimal
from typing import Any

from babel.numbers import format_currency

from .output import FORMATS, RENDERED, add_render_options, can_write, write_rendered

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
BAD_INPUT = {"bad_period", "unknown_tenant", "not_configured", "wrong_jurisdiction", "unknown_invoice",
             "bad_request"}
"""Daemon answers that mean the command was given something wrong (exit 2); the rest are failures (exit 1)."""


def add_commands(subparsers: Any, t: Any) -> None:
    p = subparsers.add_parser("invoice", help=t("billing.cli.help"), description=t("billing.cli.description"))
    p.add_argument("--config", help=t("cli.opt.config"))
    p.add_argument("--tenant", help=t("billing.cli.tenant"))
    p.add_argument("--period", help=t("billing.cli.period"))
    p.add_argument("--format", choices=FORMATS, default="text", help=t("billing.cli.format"))
    add_render_options(p, t, default=None)
    p.set_defaults(handler=cmd_invoice)
    sub = p.add_subparsers(dest="invoice_command", metavar="COMMAND")
    c = sub.add_parser("credit", help=t("billing.cli.credit.help"))
    c.add_argument("invoice", help=t("billing.cli.credit.invoice"))
    c.add_argument("--reason", required=True, help=t("billing.cli.credit.reason"))
    # SUPPRESS: the parent's values (meshd invoice --config X credit ...) must not be reset by these defaults.
    c.add_argument("--config", default=argparse.SUPPRESS, help=t("cli.opt.config"))
    c.add_argument("--format", choices=FORMATS, default=argparse.SUPPRESS, help=t("billing.cli.format"))
    add_render_options(c, t, default=argparse.SUPPRESS)
    c.set_defaults(handler=cmd_credit)


def _need(args: argparse.Namespace, ctx: Any, *names: str) -> bool:
    missing = [f"--{n}" for n in names if not getattr(args, n, None)]
    if missing:
        ctx.error(ctx.t("billing.cli.missing", options=", ".join(missing)))
        return False
    return True


def _post(ctx: Any, args: argparse.Namespace, path: str, body: dict[str, Any]) -> int:
    if not can_write(ctx, args):
        return EXIT_USAGE
    config = ctx.load_config(args.config)
    # An invoice waits for the usage query of every region of the residency.
    status, doc = ctx.call(config, "POST", path, body, timeout=60)
    if status != 200 or not isinstance(doc, dict) or "document" not in doc:
        doc = doc if isinstance(doc, dict) else {}
        code = str(doc.get("code", ""))
        ctx.error(ctx.t("billing.cli.refused", status=status, detail=str(doc.get("error", ""))))
        return EXIT_USAGE if code in BAD_INPUT else EXIT_FAILURE
    if getattr(args, "format", "text") in RENDERED:
        return EXIT_OK if write_rendered(ctx, args, doc["document"]) else EXIT_FAILURE
    if getattr(args, "format", "text") == "json":
        ctx.print(json.dumps(doc["document"], indent=2, ensure_ascii=False))
    else:
        ctx.print(summary(ctx.t, doc["document"], doc["issued"]))
    return EXIT_OK


def summary(t: Any, doc: dict[str, Any], new: bool) -> str:
    amount = format_currency(Decimal(doc["total"]), doc["currency"], locale=t.locale)
    key = "billing.cli.issued" if new else "billing.cli.issued_before"
    kind = t("billing.cli.kind.credit_note") if doc["type"] == "credit_note" else t("billing.cli.kind.invoice")
    return t(key, kind=kind, number=doc["number"], tenant=doc["customer"]["tenant"], period=doc["period"],
             total=amount)


def cmd_invoice(args: argparse.Namespace, ctx: Any) -> int:
    if not _need(args, ctx, "tenant", "period"):
        return EXIT_USAGE
    return _post(ctx, args, "/v1/invoices", {"tenant": args.tenant, "period": args.period})


def cmd_credit(args: argparse.Namespace, ctx: Any) -> int:
    if not _need(args, ctx, "reason"):
        return EXIT_USAGE
    return _post(ctx, args, "/v1/invoices/credit", {"invoice": args.invoice, "reason": args.reason})
