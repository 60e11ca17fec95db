"""``meshd usage`` (federation-wide totals), ``meshd usage record`` (one event by hand), ``meshd ingest``
(an ingestion worker for some partitions) and ``meshd metering repartition`` (change the partition count)."""

from __future__ import annotations

import argparse
import json
import socket
import uuid
from decimal import Context, Decimal, InvalidOperation, localcontext
from typing import Any
from urllib.parse import urlencode

from babel.numbers import format_decimal

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
EXACT_CONTEXT = Context(prec=60)


def add_commands(subparsers: Any, t: Any) -> None:
    p = subparsers.add_parser("usage", help=t("metering.cli.help"), description=t("metering.cli.description"))
    p.add_argument("--config", help=t("cli.opt.config"))
    p.add_argument("--tenant", help=t("metering.cli.tenant"))
    p.add_argument("--period", help=t("metering.cli.period"))
    p.add_argument("--json", action="store_true", help=t("cli.opt.json"))
    p.set_defaults(handler=cmd_usage)
    sub = p.add_subparsers(dest="usage_command", metavar="COMMAND")

    r = sub.add_parser("record", help=t("metering.cli.record.help"))
    # SUPPRESS: the parent's values (meshd usage --config X record) must not be reset by these defaults.
    r.add_argument("--config", default=argparse.SUPPRESS, help=t("cli.opt.config"))
    r.add_argument("--tenant", default=argparse.SUPPRESS, help=t("metering.cli.tenant"))
    r.add_argument("--meter", required=True, help=t("metering.cli.record.meter"))
    r.add_argument("--value", help=t("metering.cli.record.value"))
    r.add_argument("--id", help=t("metering.cli.record.id"))
    r.add_argument("--source", help=t("metering.cli.record.source"))
    r.add_argument("--time", help=t("metering.cli.record.time"))
    r.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=t("cli.opt.json"))
    r.set_defaults(handler=cmd_record)

    w = subparsers.add_parser("ingest", help=t("metering.cli.ingest.help"), description=t("metering.cli.ingest.help"))
    w.add_argument("--config", help=t("cli.opt.config"))
    w.add_argument("--partitions", help=t("metering.cli.ingest.partitions"))
    w.add_argument("--log-format", choices=["text", "json"], help=argparse.SUPPRESS)
    w.set_defaults(handler=cmd_ingest)

    m = subparsers.add_parser("metering", help=t("metering.cli.metering.help"))
    msub = m.add_subparsers(dest="metering_command", metavar="COMMAND", required=True)
    rp = msub.add_parser("repartition", help=t("metering.cli.repartition.help"),
                         description=t("metering.cli.repartition.help"))
    rp.add_argument("--config", help=t("cli.opt.config"))
    rp.add_argument("--to", type=int, required=True, help=t("metering.cli.repartition.to"))
    rp.add_argument("--json", action="store_true", help=t("cli.opt.json"))
    rp.set_defaults(handler=cmd_repartition)


def _number(t: Any, value: str) -> str:
    """An exact decimal in the user's locale, every digit kept (Babel would round to 3 places)."""
    try:
        number = Decimal(value)
    except (InvalidOperation, ValueError, TypeError):
        return value  # a LATEST string value
    exponent = number.as_tuple().exponent
    places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    with localcontext(EXACT_CONTEXT):  # ledger sums have up to 48 digits; the default context holds 28
        return format_decimal(number, format="#,##0" + ("." + "0" * places if places else ""), locale=t.locale)


def _need(args: argparse.Namespace, ctx: Any, *names: str) -> bool:
    missing = [f"--{n}" for n in names if not getattr(args, n, None)]
    if missing:
        ctx.error(ctx.t("metering.cli.missing", options=", ".join(missing)))
        return False
    return True


def _call(ctx: Any, config: Any, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """The daemon's answer; it may wait for every region of the residency, so the timeout covers theirs."""
    section = config.plugin("metering")
    return ctx.call(config, method, path, body, admin=True,
                    timeout=section.query_timeout + section.record_wait + 5)


def _daemon_error(ctx: Any, status: int, body: Any) -> int:
    body = body if isinstance(body, dict) else {}
    code, detail = body.get("code"), str(body.get("error", ""))
    if code == "bad_period":
        ctx.error(ctx.t("metering.cli.bad_period", detail=detail))
        return EXIT_USAGE
    if code == "unknown_tenant":
        ctx.error(ctx.t("metering.cli.unknown_tenant", detail=detail))
        return EXIT_USAGE
    ctx.error(ctx.t("metering.cli.daemon_error", status=status, detail=detail))
    return EXIT_FAILURE


def cmd_usage(args: argparse.Namespace, ctx: Any) -> int:
    if not _need(args, ctx, "tenant", "period"):
        return EXIT_USAGE
    config = ctx.load_config(args.config)
    status, doc = _call(ctx, config, "GET", "/v1/usage?" + urlencode({"tenant": args.tenant, "period": args.period}))
    if status != 200:
        return _daemon_error(ctx, status, doc)
    ctx.show(doc, args.json, lambda d: render_totals(ctx.t, d))
    if not doc.get("complete"):
        missing = ", ".join(f"{r} ({doc['regions'][r].get('error', '?')})" for r in doc.get("missing", []))
        ctx.error(ctx.t("metering.cli.incomplete", regions=missing))
        return EXIT_FAILURE
    return EXIT_OK


def render_totals(t: Any, doc: dict[str, Any]) -> str:
    """The human view of ``GET /v1/usage``: a header, then one row per meter."""
    from meshd.cli import render_table

    answered = [r for r, info in doc["regions"].items() if info.get("answered")]
    header = t("metering.cli.header", tenant=doc["tenant"], period=doc["period"], start=doc["start"],
               end=doc["end"], answered=len(answered), regions=len(doc["regions"]))
    rows = []
    for meter, m in doc["meters"].items():
        value = "-" if m["value"] is None else _number(t, m["value"])
        if not m.get("exact", True):
            value = t("metering.cli.at_most", value=value)
        rows.append([meter, m["kind"], value, _number(t, str(m["events"]))])
    if not rows:
        return header + "\n" + t("metering.cli.no_meters")
    return header + "\n" + render_table([t("metering.cli.col.meter"), t("metering.cli.col.kind"),
                                         t("metering.cli.col.total"), t("metering.cli.col.events")], rows)


def cmd_record(args: argparse.Namespace, ctx: Any) -> int:
    if not _need(args, ctx, "tenant"):
        return EXIT_USAGE
    config = ctx.load_config(args.config)
    event: dict[str, Any] = {
        "id": args.id or str(uuid.uuid4()),
        "source": args.source or f"meshd-cli://{socket.gethostname()}",
        "tenant": args.tenant,
        "meter": args.meter,
        "specversion": "1.0",
    }
    if args.value is not None:
        event["value"] = args.value  # a string: the daemon reads it as an exact decimal
    if args.time is not None:
        event["time"] = args.time
    status, doc = _call(ctx, config, "POST", "/v1/usage/events", event)
    if status not in (200, 400) or not isinstance(doc, dict) or "rejected" not in doc:
        return _daemon_error(ctx, status, doc)
    if getattr(args, "json", False):
        ctx.print(json.dumps(doc, indent=2, ensure_ascii=False))
    for r in doc["rejected"]:
        ctx.error(ctx.t("metering.cli.rejected", id=r.get("id") or event["id"],
                        reason=ctx.t(f"metering.reason.{r['reason']}"), detail=r.get("detail", "")))
    if doc["rejected"]:
        return EXIT_USAGE
    if not getattr(args, "json", False):
        if doc.get("duplicate_message"):
            ctx.print(ctx.t("metering.cli.duplicate", id=event["id"]))
        elif doc.get("committed") and doc.get("duplicates"):
            ctx.print(ctx.t("metering.cli.already_counted", id=event["id"]))
        elif doc.get("committed"):
            ctx.print(ctx.t("metering.cli.recorded", id=event["id"], seq=doc.get("stream_seq")))
        else:
            ctx.print(ctx.t("metering.cli.queued", id=event["id"], seq=doc.get("stream_seq")))
    return EXIT_OK


# ---------------------------------------------------------------- scale-out


def _keyring_daemon(ctx: Any, config: Any) -> Any:
    """A daemon of this config, not started, with only what opens the ledger's keyring."""
    from meshd.daemon import Daemon

    ctx.hooks.disable([name for name in ctx.hooks.plugin_names() if name not in ("metering", "keys")])
    ctx.hooks.disable(config.daemon.plugins.disabled)
    return Daemon(config, ctx.hooks)


def cmd_ingest(args: argparse.Namespace, ctx: Any) -> int:
    """Run the ingestion of some partitions as its own process (systemd: meshd-ingest@.service)."""
    import dataclasses
    import logging

    from meshd.cli import run_daemon
    from meshd.logs import setup_logging

    from .config import check_partitions, parse_ranges

    config = ctx.load_config(args.config)
    settings = config.plugin("metering")
    try:
        if args.partitions:
            wanted = check_partitions(parse_ranges(args.partitions), settings.partitions)
        else:  # what the daemon leaves to workers (the systemd unit's default)
            wanted = sorted(set(range(settings.partitions)) - set(settings.local_partitions()))
    except ValueError as exc:
        ctx.error(ctx.t("metering.cli.ingest.bad_partitions", detail=str(exc)))
        return EXIT_USAGE
    if not wanted:
        ctx.error(ctx.t("metering.cli.ingest.nothing_left", config=str(config.path)))
        return EXIT_USAGE
    if not settings.enabled:
        ctx.error(ctx.t("metering.cli.ingest.no_meters", config=str(config.path)))
        return EXIT_USAGE
    # The worker takes only its partitions, listens on an ephemeral loopback port (the daemon has the
    # configured one) and runs metering alone, with the keyring that protects the ledger.
    d = config.daemon
    worker_config = dataclasses.replace(
        config, daemon=d.model_copy(update={"http": d.http.model_copy(update={"port": 0, "listen": "127.0.0.1"})}),
        plugin_sections={**config.plugin_sections, "metering": settings.model_copy(update={"ingest": [
            str(p) for p in wanted]})})
    setup_logging(d.log.level, args.log_format or d.log.format)
    log = logging.getLogger("meshd")
    metering = ctx.hooks.pm.get_plugin("metering")
    if metering is None:
        ctx.error(ctx.t("metering.cli.ingest.no_meters", config=str(config.path)))
        return EXIT_USAGE
    metering.worker = True
    ctx.hooks.disable([name for name in ctx.hooks.plugin_names() if name not in ("metering", "keys")])
    ctx.hooks.disable(d.plugins.disabled)
    log.info("ingesting partitions %s of %d", ",".join(map(str, wanted)), settings.partitions)
    return run_daemon(worker_config, ctx.hooks, log)


def cmd_repartition(args: argparse.Namespace, ctx: Any) -> int:
    """Rewrite the ledger shards for another partition count (ingestion stopped; docs/metering.md)."""
    from pathlib import Path

    from .atrest import KeyringProtected, Plaintext
    from .config import MAX_PARTITIONS
    from .ledger import LedgerError
    from .shards import Busy, ShardLock, repartition

    config = ctx.load_config(args.config)
    settings = config.plugin("metering")
    if not 1 <= args.to <= MAX_PARTITIONS:
        ctx.error(ctx.t("metering.cli.repartition.bad_to", to=args.to, max=MAX_PARTITIONS))
        return EXIT_USAGE
    if settings.partitions != args.to:
        line = config.line_of(("metering", "partitions"))
        ctx.error(ctx.t("metering.cli.repartition.config_differs", where=f"{config.path}:{line or 1}",
                        partitions=settings.partitions, to=args.to))
        return EXIT_USAGE
    daemon = _keyring_daemon(ctx, config)
    base = Path(settings.ledger_path or daemon.state_dir / "metering" / "ledger.sqlite3")
    keyring = daemon.hooks.keyring(daemon, "metering")
    if keyring is None and settings.require_encryption:
        ctx.error(ctx.t("metering.cli.repartition.failed", detail="no keyring for purpose 'metering'"))
        return EXIT_FAILURE
    lock = ShardLock(base.parent)
    try:
        lock.acquire(exclusive=True)
    except Busy as exc:
        ctx.error(ctx.t("metering.cli.repartition.busy", detail=str(exc)))
        return EXIT_FAILURE
    try:
        report = repartition(base, KeyringProtected(keyring) if keyring is not None else Plaintext(),
                             region=config.region, retention=settings.dedup_retention, to=args.to)
    except (LedgerError, OSError) as exc:
        ctx.error(ctx.t("metering.cli.repartition.failed", detail=str(exc)))
        return EXIT_FAILURE
    finally:
        lock.release()
    if args.json:
        ctx.print(json.dumps(report, indent=2))
    elif report.get("unchanged") or report["from"] is None:
        ctx.print(ctx.t("metering.cli.repartition.unchanged", to=args.to))
    else:
        ctx.print(ctx.t("metering.cli.repartition.done", **{"from": report["from"]}, to=args.to,
                        rows=report["rows"], events=report["events"], dedup=report["dedup_records"],
                        backup=report["backup"]))
    return EXIT_OK
