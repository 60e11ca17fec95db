"""``meshd alerts list|test`` and ``meshd silence add|list|expire``: talk to the running daemon's HTTP API.

Exit codes: 0 done, 1 the daemon is unreachable or a test send failed,
2 bad input (unknown receiver or silence, bad matcher or duration).
"""

from __future__ import annotations

import argparse
import getpass
import time
from typing import Any

from meshd.durations import parse_duration
from meshd.i18n import Translator

from .silences import SilenceError, new_silence

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
SILENCE_ERRORS = ("no_matchers", "bad_matcher", "matches_everything", "bad_duration", "no_comment")


def add_commands(subparsers: argparse._SubParsersAction, t: Translator) -> None:
    alerts = subparsers.add_parser("alerts", help=t("alerts.cli.help"))
    alerts.set_defaults(handler=lambda _a, _c: _usage(alerts))
    sub = alerts.add_subparsers(dest="alerts_command", metavar="COMMAND", parser_class=type(alerts))

    p = sub.add_parser("list", help=t("alerts.cli.list.help"))
    p.add_argument("--config", help=t("cli.opt.config"))
    p.add_argument("--json", action="store_true", help=t("cli.opt.json"))
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser("test", help=t("alerts.cli.test.help"))
    p.add_argument("receiver", metavar="RECEIVER", help=t("alerts.cli.test.receiver"))
    p.add_argument("--config", help=t("cli.opt.config"))
    p.set_defaults(handler=cmd_test)

    silence = subparsers.add_parser("silence", help=t("alerts.cli.silence.help"))
    silence.set_defaults(handler=lambda _a, _c: _usage(silence))
    sub = silence.add_subparsers(dest="silence_command", metavar="COMMAND", parser_class=type(silence))

    p = sub.add_parser("add", help=t("alerts.cli.silence.add.help"))
    p.add_argument("matchers", nargs="+", metavar="MATCHER", help=t("alerts.cli.silence.add.matchers"))
    p.add_argument("--config", help=t("cli.opt.config"))
    p.add_argument("--duration", default="1h", help=t("alerts.cli.silence.add.duration"))
    p.add_argument("--comment", required=True, help=t("alerts.cli.silence.add.comment"))
    p.add_argument("--author", default=None, help=t("alerts.cli.silence.add.author"))
    p.set_defaults(handler=cmd_silence_add)

    p = sub.add_parser("list", help=t("alerts.cli.silence.list.help"))
    p.add_argument("--config", help=t("cli.opt.config"))
    p.add_argument("--all", action="store_true", help=t("alerts.cli.silence.list.all"))
    p.add_argument("--json", action="store_true", help=t("cli.opt.json"))
    p.set_defaults(handler=cmd_silence_list)

    p = sub.add_parser("expire", help=t("alerts.cli.silence.expire.help"))
    p.add_argument("id", metavar="ID", help=t("alerts.cli.silence.expire.id"))
    p.add_argument("--config", help=t("cli.opt.config"))
    p.set_defaults(handler=cmd_silence_expire)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return EXIT_USAGE


def _failed(ctx: Any, status: int, doc: Any) -> int:
    """Say what the daemon answered instead of success; the exit code for it."""
    ctx.error(ctx.t("alerts.cli.error", status=status, detail=(doc or {}).get("error", "")))
    return EXIT_FAILURE


def _when(t: Translator, epoch: float | None, now: float) -> str:
    if not epoch:
        return "-"
    return t.duration(abs(now - epoch))


def cmd_list(args: argparse.Namespace, ctx: Any) -> int:
    config = ctx.load_config(args.config)
    ctx.show(ctx.get(config, "/v1/alerts"), args.json, lambda doc: render_alerts(ctx.t, doc, config.region))
    return EXIT_OK


def render_alerts(t: Translator, doc: dict[str, Any], region: str) -> str:
    """The human view of ``GET /v1/alerts``: alerts held, the outbox, broken receivers."""
    from meshd.cli import render_table

    now = time.time()
    lines = []
    alerts = doc.get("alerts", [])
    if alerts:
        rows = [[a["labels"].get("alertname", "?"), a["labels"].get("region", "-"), a["labels"].get("severity", "-"),
                 t(f"alerts.cli.state.{a['state']}"), _when(t, a.get("starts_at"), now),
                 ", ".join(a.get("receivers", [])) or "-"] for a in alerts]
        headers = [t("alerts.cli.col.alert"), t("alerts.cli.col.region"), t("alerts.cli.col.severity"),
                   t("alerts.cli.col.state"), t("alerts.cli.col.since"), t("alerts.cli.col.receivers")]
        lines.append(render_table(headers, rows))
    else:
        lines.append(t("alerts.cli.list.none", region=doc.get("region", region)))
    st = doc.get("status", {})
    outbox = st.get("outbox", {})
    lines.append(t("alerts.cli.list.outbox", depth=outbox.get("depth", 0),
                   oldest=t.duration(outbox.get("oldest_pending_s", 0) or 0),
                   silences=st.get("silences_active", 0)))
    for receiver in st.get("receivers", []):
        if receiver.get("broken") or receiver.get("problem"):
            lines.append(t("alerts.cli.list.broken", receiver=receiver["name"],
                           detail=receiver.get("problem") or receiver.get("broken")))
    return "\n".join(lines)


def cmd_test(args: argparse.Namespace, ctx: Any) -> int:
    config = ctx.load_config(args.config)
    status, doc = ctx.call(config, "POST", f"/v1/alerts/test/{args.receiver}", {})
    t = ctx.t
    if status == 404:
        ctx.error(t("alerts.cli.test.unknown", receiver=args.receiver,
                    known=", ".join((doc or {}).get("known", [])) or "-"))
        return EXIT_USAGE
    if status != 200:
        return _failed(ctx, status, doc)
    for item in doc.get("results", []):
        key = "alerts.cli.test.ok" if item["ok"] else "alerts.cli.test.failed"
        ctx.print(t(key, target=item.get("target") or args.receiver, detail=item.get("detail", "")))
    return EXIT_OK if doc.get("ok") else EXIT_FAILURE


def cmd_silence_add(args: argparse.Namespace, ctx: Any) -> int:
    t = ctx.t
    # Checked here first, with the daemon's own rules: bad input is exit 2, in the user's
    # language, before any daemon is asked.
    try:
        duration = parse_duration(args.duration)
    except ValueError as exc:
        ctx.error(t("alerts.cli.silence.bad_duration", detail=str(exc)))
        return EXIT_USAGE
    try:
        new_silence(args.matchers, duration=duration, comment=args.comment, created_by="", now=time.time())
    except SilenceError as exc:
        detail = str(exc).split(": ", 1)[-1]
        ctx.error(t(f"alerts.cli.silence.invalid.{exc.code}", detail=detail)
                  if exc.code in SILENCE_ERRORS else t("alerts.cli.silence.rejected", detail=str(exc)))
        return EXIT_USAGE
    config = ctx.load_config(args.config)
    author = args.author or _user()
    status, doc = ctx.call(config, "POST", "/v1/silences",
                           {"matchers": args.matchers, "duration": duration, "comment": args.comment,
                            "created_by": author})
    if status == 400:
        ctx.error(t("alerts.cli.silence.rejected", detail=(doc or {}).get("error", "")))
        return EXIT_USAGE
    if status != 201:
        return _failed(ctx, status, doc)
    silence = doc["silence"]
    ctx.print(t("alerts.cli.silence.added", id=silence["id"], duration=t.exact_duration(duration)))
    return EXIT_OK


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return ""


def cmd_silence_list(args: argparse.Namespace, ctx: Any) -> int:
    config = ctx.load_config(args.config)
    doc = ctx.get(config, "/v1/silences" + ("?all=1" if args.all else ""))
    ctx.show(doc, args.json, lambda d: render_silences(ctx.t, d))
    return EXIT_OK


def render_silences(t: Translator, doc: dict[str, Any]) -> str:
    from meshd.cli import render_table

    now = time.time()
    silences = doc.get("silences", [])
    if not silences:
        return t("alerts.cli.silence.none")
    rows = [[s["id"], " ".join(s["matchers"]), t(f"alerts.cli.silence.state.{s.get('state', 'active')}"),
             _when(t, s.get("ends_at"), now), s.get("created_by") or "-", s.get("comment", "")] for s in silences]
    headers = [t("alerts.cli.col.id"), t("alerts.cli.col.matchers"), t("alerts.cli.col.state"),
               t("alerts.cli.col.ends"), t("alerts.cli.col.author"), t("alerts.cli.col.comment")]
    return render_table(headers, rows)


def cmd_silence_expire(args: argparse.Namespace, ctx: Any) -> int:
    config = ctx.load_config(args.config)
    status, doc = ctx.call(config, "POST", f"/v1/silences/{args.id}/expire", {})
    if status == 404:
        ctx.error(ctx.t("alerts.cli.silence.unknown", id=args.id))
        return EXIT_USAGE
    if status != 200:
        return _failed(ctx, status, doc)
    ctx.print(ctx.t("alerts.cli.silence.expired", id=args.id))
    return EXIT_OK
