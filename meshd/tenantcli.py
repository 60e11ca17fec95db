"""``meshd tenants import FILE | list | show ID``: the tenant directory from the command line.

With ``tenants: {registry: kv}`` the commands connect to NATS as the
region's daemon does (its ``nats:`` settings) and read or write the KV
registry; with ``tenants: tenants.yaml`` ``list`` and ``show`` read the file
and ``import`` is refused (the file is the directory). Exit 0, 1 (the
registry cannot be reached), 2 (bad input: a file that does not validate,
an unknown tenant, no tenant directory configured).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from .cli import help_handler
from .config import ConfigError, LoadedConfig, load_model_file
from .tenantdir import TenantDirectory, TenantDirectoryError
from .tenants import Tenant, TenantFile

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
STATUSES = ("provisioning", "active", "suspended", "deleted")
CONNECT_TIMEOUT = 30.0


def add_commands(subparsers: Any, t: Any) -> None:
    p = subparsers.add_parser("tenants", help=t("tenants.cli.help"), description=t("tenants.cli.description"))
    sub = p.add_subparsers(dest="tenants_command", metavar="COMMAND", parser_class=type(p))
    p.set_defaults(handler=help_handler(p))

    i = sub.add_parser("import", help=t("tenants.cli.import.help"), description=t("tenants.cli.import.description"))
    i.add_argument("file", help=t("tenants.cli.import.file"))
    i.add_argument("--config", help=t("cli.opt.config"))
    i.set_defaults(handler=cmd_import)

    ls = sub.add_parser("list", help=t("tenants.cli.list.help"))
    ls.add_argument("--status", choices=STATUSES, help=t("tenants.cli.list.status"))
    ls.add_argument("--config", help=t("cli.opt.config"))
    ls.add_argument("--json", action="store_true", help=t("cli.opt.json"))
    ls.set_defaults(handler=cmd_list)

    s = sub.add_parser("show", help=t("tenants.cli.show.help"))
    s.add_argument("tenant", help=t("tenants.cli.show.tenant"))
    s.add_argument("--config", help=t("cli.opt.config"))
    s.add_argument("--json", action="store_true", help=t("cli.opt.json"))
    s.set_defaults(handler=cmd_show)



def _with_directory(ctx: Any, config: LoadedConfig,
                    work: Callable[[TenantDirectory], Awaitable[int]]) -> int:
    """Run ``work`` on the config's directory: the KV registry read whole over NATS, or the YAML file as loaded."""
    from .tenantkv import KvTenantDirectory, opened
    from .transport import NatsTransport, TransportError
    from .yamlsource import EncryptedValue

    directory = config.tenants
    if directory is None:
        ctx.error(ctx.t("tenants.cli.none_configured", path=config.path))
        return EXIT_USAGE
    if not isinstance(directory, KvTenantDirectory):
        return anyio.run(work, directory)

    def secret(value: str) -> str:
        if isinstance(value, EncryptedValue):
            plain = ctx.hooks.decrypt_secret(config, str(value))
            if plain is None:
                raise TransportError("an !encrypted NATS secret cannot be decrypted here")
            return str(plain)
        return value

    async def run() -> int:
        d = config.daemon
        transport = NatsTransport(d.nats, name=f"meshd-tenants-{d.federation}-{d.region}", secret=secret)
        try:
            with anyio.fail_after(CONNECT_TIMEOUT):
                await transport.connect()
                async with opened(transport, directory.settings, jurisdiction=directory.jurisdiction,
                                  region=d.region) as live:
                    return await work(live)
        finally:
            await transport.close()

    try:
        return anyio.run(run)
    except (TransportError, TimeoutError, OSError) as exc:
        ctx.error(ctx.t("tenants.cli.unreachable", servers=", ".join(config.daemon.nats.servers),
                        detail=str(exc) or type(exc).__name__))
        return EXIT_FAILURE


def cmd_import(args: argparse.Namespace, ctx: Any) -> int:
    from .tenantkv import KvTenantDirectory

    config = ctx.load_config(args.config)
    if not isinstance(config.tenants, KvTenantDirectory):
        ctx.error(ctx.t("tenants.cli.import.not_registry", path=config.path))
        return EXIT_USAGE
    try:
        file = load_model_file(Path(args.file), TenantFile)
    except ConfigError as exc:
        for issue in exc.issues:
            ctx.error(ctx.describe_issue(issue))
        return EXIT_USAGE
    jurisdictions = {r.jurisdiction for r in config.region_map.regions.values()}
    bad = [(tid, t.residency) for tid, t in file.tenants.items() if t.residency not in jurisdictions]
    for tid, residency in bad:
        ctx.error(ctx.t("tenants.cli.import.unknown_residency", file=args.file, tenant=tid, residency=residency))
    if bad:
        return EXIT_USAGE

    async def work(directory: Any) -> int:
        result = await directory.import_records(file.tenants)
        counts = {k: sum(1 for v in result.outcome.values() if v == k) for k in ("created", "updated", "unchanged")}
        ctx.print(ctx.t("tenants.cli.import.done", file=args.file, **counts))
        for jurisdiction, ids in sorted(result.customer_elsewhere.items()):
            ctx.print(ctx.t("tenants.cli.import.customer_elsewhere", count=len(ids), jurisdiction=jurisdiction,
                            here=directory.jurisdiction or "-", tenants=", ".join(ids)))
        return EXIT_OK

    return _with_directory(ctx, config, work)


def _row(t: Tenant) -> dict[str, Any]:
    return {"id": t.id, "name": t.name, "partner": t.partner, "plan": t.plan, "residency": t.residency,
            "home": t.home, "status": t.status, "revision": t.revision}


def cmd_list(args: argparse.Namespace, ctx: Any) -> int:
    config = ctx.load_config(args.config)

    async def work(directory: TenantDirectory) -> int:
        items: list[Tenant] = []
        cursor = None
        while True:
            page = directory.list(status=args.status, cursor=cursor, limit=1000)
            items += page.items
            cursor = page.next_cursor
            if cursor is None:
                break
        if args.json:
            ctx.print(json.dumps([_public(t) for t in items], indent=2, ensure_ascii=False))
            return EXIT_OK
        if not items:
            ctx.print(ctx.t("tenants.cli.list.empty"))
            return EXIT_OK
        headers = [ctx.t(f"tenants.cli.column.{c}") for c in ("id", "name", "partner", "plan", "residency",
                                                               "home", "status", "revision")]
        rows = [[str(v) if v is not None else "-" for v in _row(t).values()] for t in items]
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        ctx.print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
        for r in rows:
            ctx.print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
        return EXIT_OK

    return _with_directory(ctx, config, work)


def _public(t: Tenant) -> dict[str, Any]:
    """A tenant as printed: customer fields only where the copy has them (this jurisdiction)."""
    return t.model_dump(mode="json", exclude_none=True)


def cmd_show(args: argparse.Namespace, ctx: Any) -> int:
    config = ctx.load_config(args.config)

    async def work(directory: TenantDirectory) -> int:
        tenant = directory.get(args.tenant)
        if tenant is None:
            ctx.error(ctx.t("tenants.cli.show.unknown", tenant=args.tenant))
            return EXIT_USAGE
        doc = _public(tenant)
        if args.json:
            ctx.print(json.dumps(doc, indent=2, ensure_ascii=False))
            return EXIT_OK
        for key, value in doc.items():
            if key in ("created", "updated"):
                value = ctx.t.datetime(datetime.fromtimestamp(value, UTC))
            elif isinstance(value, dict):
                value = json.dumps(value, ensure_ascii=False)
            ctx.print(f"{ctx.t(f'tenants.cli.field.{key}')}: {value}")
        return EXIT_OK

    try:
        return _with_directory(ctx, config, work)
    except TenantDirectoryError as exc:
        ctx.error(str(exc))
        return EXIT_USAGE
