"""``meshd invoice`` (issue a tenant's invoice for a month) and ``meshd invoice credit`` (a credit note)."""

from __future__ import annotations

import argparse
import json
import logging
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from babel.numbers import format_currency

from meshd.cli import help_handler

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
    p.add_argument("--all", action="store_true", help=t("billing.cli.all"))
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


def add_billing_commands(subparsers: Any, t: Any) -> None:
    p = subparsers.add_parser("billing", help=t("billing.cli.billing.help"),
                              description=t("billing.cli.billing.help"))
    sub = p.add_subparsers(dest="billing_command", metavar="COMMAND", parser_class=type(p))
    p.set_defaults(handler=help_handler(p))
    a = sub.add_parser("audit", help=t("billing.cli.audit.help"), description=t("billing.cli.audit.description"))
    a.add_argument("--config", help=t("cli.opt.config"))
    a.add_argument("--period", required=True, help=t("billing.cli.period"))
    a.add_argument("--json", action="store_true", help=t("billing.cli.json"))
    a.set_defaults(handler=cmd_audit)
    m = sub.add_parser("mrr", help=t("billing.cli.mrr.help"), description=t("billing.cli.mrr.description"))
    m.add_argument("--config", help=t("cli.opt.config"))
    m.add_argument("--currency", default="USD", help=t("billing.cli.currency"))
    m.add_argument("--date", help=t("billing.cli.mrr.date"))
    m.add_argument("--json", action="store_true", help=t("billing.cli.json"))
    m.set_defaults(handler=cmd_mrr)
    r = sub.add_parser("revenue", help=t("billing.cli.revenue.help"),
                       description=t("billing.cli.revenue.description"))
    r.add_argument("--config", help=t("cli.opt.config"))
    r.add_argument("--period", required=True, help=t("billing.cli.period"))
    r.add_argument("--currency", default="USD", help=t("billing.cli.currency"))
    r.add_argument("--json", action="store_true", help=t("billing.cli.json"))
    r.set_defaults(handler=cmd_revenue)



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
    if args.all:
        return cmd_invoice_all(args, ctx)
    if not _need(args, ctx, "tenant", "period"):
        return EXIT_USAGE
    return _post(ctx, args, "/v1/invoices", {"tenant": args.tenant, "period": args.period})


class Progress:
    """A progress bar on a terminal (redrawn in place); on a pipe or a log, a line at every tenth."""

    def __init__(self, stream: TextIO, total: int, label: str, width: int = 30):
        self.stream, self.total, self.label, self.width = stream, total, label, width
        self.tty = stream.isatty()
        self.done = 0
        self.started = time.monotonic()
        self._last_tenth = -1

    def step(self, n: int = 1) -> None:
        self.done += n
        if self.tty:
            filled = self.width * self.done // max(1, self.total)
            bar = "#" * filled + "." * (self.width - filled)
            self.stream.write(f"\r[{bar}] {self.done}/{self.total} {self.label}")
            if self.done >= self.total:
                self.stream.write("\n")
        else:
            tenth = 10 * self.done // max(1, self.total)
            if tenth != self._last_tenth and (tenth > self._last_tenth or self.done == self.total):
                self._last_tenth = tenth
                self.stream.write(f"{self.done}/{self.total} {self.label}\n")
        self.stream.flush()


def cmd_invoice_all(args: argparse.Namespace, ctx: Any) -> int:
    """Every tenant this region bills, one JSON file each in ``--out``; a failure is reported and skipped."""
    if not _need(args, ctx, "period", "out"):
        return EXIT_USAGE
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        ctx.error(ctx.t("billing.cli.out_unusable", path=out, detail=exc.strerror or str(exc)))
        return EXIT_USAGE
    config = ctx.load_config(args.config)
    status, listing = ctx.call(config, "GET", "/v1/billing/tenants", admin=True)
    if status != 200 or not isinstance(listing, dict):
        ctx.error(ctx.t("billing.cli.refused", status=status, detail=str((listing or {}).get("error", ""))))
        return EXIT_FAILURE
    tenants: list[str] = listing["tenants"]
    progress = Progress(ctx.err, len(tenants), ctx.t("billing.cli.all_label"))
    failed: list[tuple[str, str]] = []
    issued = 0
    for tenant in tenants:
        status, doc = ctx.call(config, "POST", "/v1/invoices", {"tenant": tenant, "period": args.period},
                               timeout=60)
        if status == 200 and isinstance(doc, dict) and "document" in doc:
            document = doc["document"]
            (out / f"{document['number']}.json").write_text(
                json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
            if args.format in RENDERED:  # the page too, in each customer's language unless --lang says
                from .render import render_html, render_pdf
                page = render_html(document, args.invoice_lang)
                data = render_pdf(page) if args.format == "pdf" else page.encode("utf-8")
                (out / f"{document['number']}.{args.format}").write_bytes(data)
            issued += doc["issued"]
        else:
            failed.append((tenant, str((doc or {}).get("error", status)) if isinstance(doc, dict) else str(status)))
        progress.step()
    for tenant, detail in failed:
        ctx.error(ctx.t("billing.cli.all_failed", tenant=tenant, detail=detail))
    ctx.print(ctx.t("billing.cli.all_done", count=len(tenants) - len(failed), issued=issued, failed=len(failed),
                    period=args.period, out=out))
    return EXIT_FAILURE if failed else EXIT_OK


def cmd_audit(args: argparse.Namespace, ctx: Any) -> int:
    """Reconcile metered usage with invoiced quantities; exit 1 when anything differs."""
    config = ctx.load_config(args.config)
    status, doc = ctx.call(config, "POST", "/v1/billing/audit", {"period": args.period}, timeout=300)
    if status != 200 or not isinstance(doc, dict) or "differences" not in doc:
        doc = doc if isinstance(doc, dict) else {}
        ctx.error(ctx.t("billing.cli.refused", status=status, detail=str(doc.get("error", ""))))
        return EXIT_USAGE if str(doc.get("code", "")) in BAD_INPUT else EXIT_FAILURE
    if args.json:
        ctx.print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        for diff in doc["differences"]:
            if diff["problem"] == "quantity":
                ctx.print(ctx.t("billing.cli.audit.quantity", **{k: diff[k] for k in (
                    "tenant", "meter", "invoice", "metered", "invoiced", "difference")}))
            else:
                ctx.print(ctx.t(f"billing.cli.audit.{diff['problem']}", tenant=diff["tenant"], detail=diff["detail"]))
        ctx.print(ctx.t("billing.cli.audit.summary", region=doc["region"], period=doc["period"],
                        checked=doc["invoices_checked"], count=len(doc["differences"])))
    return EXIT_FAILURE if doc["differences"] else EXIT_OK


def _files(ctx: Any, config: Any) -> Any:
    from .runtime import SECTION, load_files, meters_of

    settings = config.plugin(SECTION)
    if not settings.enabled:
        ctx.error(ctx.t("billing.cli.not_enabled", path=config.path))
        raise SystemExit(EXIT_USAGE)
    return settings, load_files(settings, meters_of(config))


def _report(ctx: Any, args: argparse.Namespace, report: dict[str, Any], title: str) -> int:
    if args.json:
        ctx.print(json.dumps(report, indent=2, ensure_ascii=False))
        return EXIT_OK
    from meshd.cli import render_table

    t, cur = ctx.t, report["currency"]
    ctx.print(title)
    for group in ("region", "jurisdiction", "plan", "currency", "type"):
        values = report.get(f"by_{group}")
        if values:
            rows = [[key, format_currency(Decimal(v), cur, locale=t.locale)] for key, v in values.items()]
            ctx.print(render_table([t(f"billing.cli.report.{group}"), t("billing.cli.report.amount", currency=cur)],
                                   rows))
            ctx.print()
    for rate in report["rates"]:
        ctx.print(t("billing.cli.report.rate", **{"from": rate["from"]}, to=rate["to"], rate=rate["rate"],
                    date=rate["date"]))
    return EXIT_OK


def cmd_mrr(args: argparse.Namespace, ctx: Any) -> int:
    from .invoice import InvoiceError
    from .reports import mrr

    config = ctx.load_config(args.config)
    _settings, files = _files(ctx, config)
    day = _date(ctx, args.date)
    directory = config.tenants
    try:
        report = mrr(directory.tenants if directory is not None else {}, files, day, args.currency.upper())
    except (InvoiceError, ValueError) as exc:
        ctx.error(str(exc))
        return EXIT_USAGE
    title = ctx.t("billing.cli.mrr.title", date=report["date"], count=report["count"],
                  total=format_currency(Decimal(report["total"]), report["currency"], locale=ctx.t.locale))
    return _report(ctx, args, report, title)


def cmd_revenue(args: argparse.Namespace, ctx: Any) -> int:
    from .invoice import InvoiceError, month
    from .reports import revenue
    from .store import InvoiceStore, StoreLocked

    config = ctx.load_config(args.config)
    settings, files = _files(ctx, config)
    try:
        _first, last = month(args.period)
    except InvoiceError as exc:
        ctx.error(str(exc))
        return EXIT_USAGE
    store = InvoiceStore(settings.store_dir or config.daemon.state_dir / "billing")
    try:
        if _any_sealed(store):
            store.keyring = _offline_keyring(ctx, config)
        docs = [d for entity in files.matrix.entities for n in store.numbers(entity)
                if (d := store.get(entity, n)) is not None]
    except StoreLocked as exc:
        ctx.error(str(exc))
        return EXIT_FAILURE
    try:
        report = revenue(docs, files.fx, args.period, last, args.currency.upper(),
                         {d["number"]: config.region for d in docs})
    except ValueError as exc:
        ctx.error(str(exc))
        return EXIT_USAGE
    title = ctx.t("billing.cli.revenue.title", region=config.region, period=args.period, count=report["count"],
                  total=format_currency(Decimal(report["total"]), report["currency"], locale=ctx.t.locale))
    return _report(ctx, args, report, title)


def _any_sealed(store: Any) -> bool:
    from .store import is_sealed

    for entity in store.entities():
        for number in store.numbers(entity):
            try:
                if is_sealed(json.loads(store.path(entity, number).read_text(encoding="utf-8"))):
                    return True
            except (OSError, ValueError):
                continue
    return False


def _offline_keyring(ctx: Any, config: Any) -> Any:
    """The region's ``invoices`` keyring for a command run beside the daemon, through the same hook.

    Asked only when the store holds sealed documents, so that reading a
    plaintext store never creates a keyring (or a KEK) as whoever runs the CLI.
    """
    from .runtime import KEYRING_PURPOSE

    class Offline:  # what meshd_keyring implementations read of a daemon
        def __init__(self) -> None:
            self.config, self.hooks, self.region = config, ctx.hooks, config.region
            self.state_dir = config.daemon.state_dir
            self.log = logging.getLogger(f"meshd.{config.region}.billing")

    return ctx.hooks.keyring(Offline(), KEYRING_PURPOSE)


def _date(ctx: Any, given: str | None) -> date:
    if not given:
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(given)
    except ValueError:
        ctx.error(ctx.t("billing.cli.bad_date", value=given))
        raise SystemExit(EXIT_USAGE) from None


def cmd_credit(args: argparse.Namespace, ctx: Any) -> int:
    if not _need(args, ctx, "reason"):
        return EXIT_USAGE
    return _post(ctx, args, "/v1/invoices/credit", {"invoice": args.invoice, "reason": args.reason})
