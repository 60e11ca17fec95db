"""``meshd sla``: objectives, achieved figures, budgets, burn, incidents, MTTD and MTTR per region and plan."""

from __future__ import annotations

import argparse
import time
from typing import Any
from urllib.parse import urlencode

from meshd.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, render_table

WATCH_EVERY_S = 5.0


def add_commands(subparsers: Any, t: Any) -> None:
    p = subparsers.add_parser("sla", help=t("sla.cli.help"), description=t("sla.cli.description"))
    p.add_argument("--config", help=t("cli.opt.config"))
    p.add_argument("--period", help=t("sla.cli.period_help"))
    p.add_argument("--plan", help=t("sla.cli.plan_help"))
    p.add_argument("--tenant", help=t("sla.cli.tenant_help"))
    p.add_argument("--json", action="store_true", help=t("cli.opt.json"))
    p.add_argument("--watch", action="store_true", help=t("sla.cli.watch_help"))
    p.add_argument("--refresh", type=float, default=WATCH_EVERY_S, metavar="SECONDS", help=t("sla.cli.refresh_help"))
    p.set_defaults(handler=cmd_sla)
    sub = p.add_subparsers(dest="sla_command", metavar="COMMAND")
    c = sub.add_parser("credits", help=t("sla.cli.credits.help"))
    # SUPPRESS: the parent's values (meshd sla --config X credits) must not be reset by these defaults.
    c.add_argument("--config", default=argparse.SUPPRESS, help=t("cli.opt.config"))
    c.add_argument("--period", required=True, help=t("sla.cli.credits.period_help"))
    c.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=t("cli.opt.json"))
    c.set_defaults(handler=cmd_credits)
    r = sub.add_parser("report", help=t("sla.report.help"))
    r.add_argument("--config", default=argparse.SUPPRESS, help=t("cli.opt.config"))
    r.add_argument("--period", required=True, help=t("sla.cli.period_help"))
    r.add_argument("--plan", default=argparse.SUPPRESS, help=t("sla.cli.plan_help"))
    r.add_argument("--format", dest="report_format", choices=("md", "html", "pdf"), help=t("sla.report.format_help"))
    r.add_argument("--out", help=t("sla.report.out_help"))
    r.set_defaults(handler=cmd_report)


def cmd_report(args: argparse.Namespace, ctx: Any) -> int:
    from pathlib import Path

    from .report import render_html, render_markdown, render_pdf  # jinja2 and WeasyPrint: only when asked

    out = Path(args.out) if args.out else None
    fmt = args.report_format or ({".html": "html", ".htm": "html", ".pdf": "pdf"}.get(out.suffix.lower(), "md")
                                 if out else "md")
    if fmt == "pdf" and out is None:
        ctx.error(ctx.t("sla.report.pdf_needs_out"))
        return EXIT_USAGE
    config = ctx.load_config(args.config)
    status, doc = fetch(ctx, config, args.period, getattr(args, "plan", None))
    if status != 200:
        return daemon_error(ctx, status, doc)
    lang = ctx.t.lang
    if fmt == "md":
        text: str | None = render_markdown(doc, lang)
    elif fmt == "html":
        text = render_html(doc, lang)
    else:
        text = None
    if out is None:
        assert text is not None
        ctx.print(text.rstrip("\n"))
    else:
        try:
            if text is not None:
                out.write_text(text, encoding="utf-8")
            else:
                out.write_bytes(render_pdf(render_html(doc, lang)))
        except OSError as exc:
            ctx.error(ctx.t("sla.report.failed", path=out, detail=exc.strerror or str(exc)))
            return EXIT_FAILURE
        ctx.error(ctx.t("sla.report.written", path=out))
    return report_missing(ctx, doc)


def cmd_credits(args: argparse.Namespace, ctx: Any) -> int:
    config = ctx.load_config(args.config)
    timeout = config.plugin("sla").query_timeout * 4 + 10
    status, doc = ctx.call(config, "GET", "/v1/sla/credits?" + urlencode({"period": args.period}), admin=False,
                           timeout=timeout)
    if status != 200:
        return daemon_error(ctx, int(status), doc)

    def render_credits(d: dict[str, Any]) -> str:
        headers = [ctx.t(f"sla.cli.credits.col.{c}") for c in ("tenant", "plan", "credit", "description")]
        body = [[c["tenant"], c["plan"], f"{c['percent_of_base']} %", c["description"]] for c in d["credits"]]
        return ctx.t("sla.cli.credits.title", period=d["period"]) + "\n" + render_table(headers, body)

    ctx.show(doc, getattr(args, "json", False), render_credits)
    if not doc.get("complete"):
        failed = ", ".join(f"{k} ({v})" for k, v in sorted(doc.get("failed", {}).items()))
        ctx.error(ctx.t("sla.cli.credits.incomplete", tenants=failed))
        return EXIT_FAILURE
    return EXIT_OK


def fetch(ctx: Any, config: Any, period: str | None, plan: str | None, tenant: str | None = None) -> tuple[int, Any]:
    query = {**({"period": period} if period else {}), **({"plan": plan} if plan else {}),
             **({"tenant": tenant} if tenant else {})}
    timeout = config.plugin("sla").query_timeout + 10
    status, doc = ctx.call(config, "GET", "/v1/sla?" + urlencode(query), admin=False, timeout=timeout)
    return int(status), doc


def cmd_sla(args: argparse.Namespace, ctx: Any) -> int:
    if not args.refresh > 0:
        ctx.error(ctx.t("sla.cli.bad_refresh", value=args.refresh))
        return EXIT_USAGE
    config = ctx.load_config(args.config)
    if args.tenant:
        status, doc = fetch(ctx, config, args.period, None, args.tenant)
        if status != 200:
            return daemon_error(ctx, status, doc)
        ctx.show(doc, args.json, lambda d: render_tenant(ctx.t, d))
        return report_missing(ctx, doc)
    status, doc = fetch(ctx, config, args.period, args.plan)
    if status != 200:
        return daemon_error(ctx, status, doc)
    if args.watch:
        return watch(args, ctx, config)
    ctx.show(doc, args.json, lambda d: render(ctx.t, d))
    return report_missing(ctx, doc)


def daemon_error(ctx: Any, status: int, body: Any) -> int:
    body = body if isinstance(body, dict) else {}
    detail = str(body.get("error", ""))
    if body.get("code") in ("bad_period", "unknown_plan", "unknown_tenant"):
        ctx.error(ctx.t("sla.cli.bad_request", detail=detail))
        return EXIT_USAGE
    ctx.error(ctx.t("sla.cli.daemon_error", status=status, detail=detail))
    return EXIT_FAILURE


def report_missing(ctx: Any, doc: dict[str, Any]) -> int:
    if doc.get("complete"):
        return EXIT_OK
    missing = ", ".join(f"{r} ({why})" for r, why in sorted(doc.get("missing", {}).items()))
    ctx.error(ctx.t("sla.cli.incomplete", regions=missing))
    return EXIT_FAILURE


def _pct(value: float | None, places: int = 3) -> str:
    return "-" if value is None else f"{value * 100:.{places}f} %"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 60:.1f} min" if value >= 60 else f"{value:.1f} s"


def rows(t: Any, doc: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = [t(f"sla.cli.col.{c}") for c in ("region", "plan", "window", "objective", "achieved", "budget", "p95",
                                                "burn", "incidents", "mttd", "mttr")]
    out: list[list[str]] = []
    for plan, body in doc["plans"].items():
        for window, judged_regions in body.get("windows", {doc["period"]: body["regions"]}).items():
            figures_of = doc.get("windows", {}).get(window, {}).get("regions", doc["regions"])
            for region, judged in judged_regions.items():
                out.append(_row(region, plan, window, body["objective"], judged, figures_of[region], t))
    return headers, out


def _row(region: str, plan: str, window: str, objective: dict[str, Any], judged: dict[str, Any],
         figures: dict[str, Any], t: Any) -> list[str]:
    if not figures.get("answered"):
        return [region, plan, window, "", t("sla.cli.no_answer", reason=figures.get("reason", "")),
                "", "", "", "", "", ""]
    rates = figures.get("burn", {}).get(plan, {}).get("rates", {})
    worst = max(rates.values(), default=None)
    p95 = figures.get("p95_ms")
    return [
        region, plan, window, f"{objective['availability']} % / {objective['latency_p95_ms']} ms",
        _pct(figures.get("availability")) + ("" if judged["availability_met"] is not False else " !"),
        _pct(judged.get("budget_left"), 1),
        ("-" if p95 is None else f"{p95:.0f} ms") + ("" if judged["latency_met"] is not False else " !"),
        "-" if worst is None else f"{worst:.1f}x",
        str(len(figures.get("incidents", []))), _seconds(figures.get("mttd_s")), _seconds(figures.get("mttr_s")),
    ]


def render_tenant(t: Any, doc: dict[str, Any]) -> str:
    """One row per window: the tenant's weighted SLI against its own objective, and the weights used."""
    headers = [t(f"sla.cli.col.{c}") for c in ("window", "objective", "achieved", "budget", "p95", "weights")]
    objective = doc["objective"]
    how = {"metered": t("sla.cli.weighting.metered"), "home": t("sla.cli.weighting.home"),
           "equal": t("sla.cli.weighting.equal")}
    body = []
    for window, w in doc["windows"].items():
        weights = ", ".join(f"{r} {share * 100:.0f} %" for r, share in sorted(w["weights"].items()))
        p95 = w.get("p95_ms")
        body.append([window, f"{objective['availability']} % / {objective['latency_p95_ms']} ms",
                     _pct(w.get("availability")) + ("" if w["availability_met"] is not False else " !"),
                     _pct(w.get("budget_left"), 1),
                     ("-" if p95 is None else f"{p95:.0f} ms") + ("" if w["latency_met"] is not False else " !"),
                     f"{weights} ({how[w['weighting']]})"])
    title = t("sla.cli.tenant_title", tenant=doc["tenant"], plan=doc.get("plan") or "-", period=doc["period"])
    return title + "\n" + render_table(headers, body)


def render(t: Any, doc: dict[str, Any]) -> str:
    headers, body = rows(t, doc)
    title = t("sla.cli.title", period=doc["period"])
    return title + "\n" + render_table(headers, body)


def watch(args: argparse.Namespace, ctx: Any, config: Any) -> int:
    """Refresh the table in place until Ctrl-C; a failed refresh is shown, not fatal."""
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    console = Console(file=ctx.out)

    def table() -> Table:
        status, doc = fetch(ctx, config, args.period, args.plan)
        title_period = doc.get("period", args.period) if isinstance(doc, dict) else args.period
        grid = Table(title=ctx.t("sla.cli.title", period=title_period) + f"  {time.strftime('%H:%M:%S')}")
        if status != 200:
            grid.add_column(ctx.t("sla.cli.col.region"))
            grid.add_row(str(doc.get("error", status) if isinstance(doc, dict) else status))
            return grid
        headers, body = rows(ctx.t, doc)
        for h in headers:
            grid.add_column(h)
        for row in body:
            grid.add_row(*row)
        for region, why in sorted(doc.get("missing", {}).items()):
            grid.caption = ctx.t("sla.cli.incomplete", regions=f"{region} ({why})")
        return grid

    try:
        with Live(table(), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(args.refresh)  # the refresh period of a live view, not a synchronisation
                live.update(table(), refresh=True)
    except KeyboardInterrupt:
        return EXIT_OK
