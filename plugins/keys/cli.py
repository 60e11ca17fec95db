"""``meshd keys ...`` and ``meshd secrets encrypt``.

``keys status``, ``keys rotate``, ``keys set`` and ``keys rewrap`` (without
``--file``) talk to the running daemon over its local HTTP API, so that the
daemon announces what changed to the federation. ``keys status --local``,
``keys rewrap --file`` and ``secrets encrypt`` work on the region's state
directory directly (they must run as the daemon's user on the region's
host): the daemon need not run, and cannot, before its NATS password is
encrypted.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshd.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Context, help_handler, render_table
from meshd.config import ConfigError, LoadedConfig, load_config
from meshd.i18n import Translator

from .configsecrets import encrypt_config_value, rewrap_file
from .errors import KEKError, KeysError
from .settings import SECRETS_PURPOSE

if TYPE_CHECKING:
    from .plugin import KeysPlugin


def add_commands(subparsers: argparse._SubParsersAction, t: Translator, plugin: KeysPlugin) -> None:
    keys = subparsers.add_parser("keys", help=t("keys.cli.help"), description=t("keys.cli.help"))
    sub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", parser_class=type(keys))
    keys.set_defaults(handler=help_handler(keys))

    p = sub.add_parser("status", help=t("keys.cli.status.help"))
    p.add_argument("--config", help=t("cli.opt.config"))
    p.add_argument("--federation", action="store_true", help=t("keys.cli.status.federation"))
    p.add_argument("--local", action="store_true", help=t("keys.cli.status.local"))
    p.add_argument("--json", action="store_true", help=t("keys.cli.opt.json"))
    p.set_defaults(handler=functools.partial(cmd_status, plugin))

    p = sub.add_parser("rotate", help=t("keys.cli.rotate.help"))
    p.add_argument("--config", help=t("cli.opt.config"))
    p.add_argument("--purpose", action="append", help=t("keys.cli.opt.purposes"))
    p.set_defaults(handler=cmd_rotate)

    p = sub.add_parser("set", help=t("keys.cli.set.help"))
    p.add_argument("--config", help=t("cli.opt.config"))
    p.add_argument("--purpose", required=True, help=t("keys.cli.opt.purpose"))
    p.add_argument("--min-decryption-version", type=int, help=t("keys.cli.set.min_decryption"))
    p.add_argument("--min-encryption-version", type=int, help=t("keys.cli.set.min_encryption"))
    p.set_defaults(handler=cmd_set)

    p = sub.add_parser("rewrap", help=t("keys.cli.rewrap.help"))
    p.add_argument("--config", help=t("cli.opt.config"))
    p.add_argument("--purpose", action="append", help=t("keys.cli.opt.purposes"))
    p.add_argument("--file", action="append", type=Path, help=t("keys.cli.rewrap.file"))
    p.add_argument("--kek", action="store_true", help=t("keys.cli.rewrap.kek"))
    p.set_defaults(handler=functools.partial(cmd_rewrap, plugin))

    p = sub.add_parser("migrate-kek", help=t("keys.cli.migrate.help"), description=t("keys.cli.migrate.description"))
    p.add_argument("--config", help=t("cli.opt.config"))
    p.add_argument("--to", required=True, metavar="PROVIDER", help=t("keys.cli.migrate.to"))
    p.add_argument("--local", action="store_true", help=t("keys.cli.migrate.local"))
    p.set_defaults(handler=functools.partial(cmd_migrate_kek, plugin))

    secrets = subparsers.add_parser("secrets", help=t("keys.cli.secrets.help"), description=t("keys.cli.secrets.help"))
    sub = secrets.add_subparsers(dest="secrets_command", metavar="COMMAND", parser_class=type(secrets))
    secrets.set_defaults(handler=help_handler(secrets))
    p = sub.add_parser("encrypt", help=t("keys.cli.encrypt.help"), description=t("keys.cli.encrypt.description"))
    p.add_argument("--config", help=t("cli.opt.config"))
    p.set_defaults(handler=functools.partial(cmd_encrypt, plugin))



def _load(ctx: Context, given: str | None) -> LoadedConfig:
    """The config without the plugins' checks, so that one broken secret does not block key commands."""
    path = ctx.config_path(given)
    try:
        return load_config(path, ctx.hooks.config_models())
    except ConfigError as exc:
        for issue in exc.issues:
            ctx.error(ctx.describe_issue(issue))
        ctx.error(ctx.t("cli.check_config.invalid", count=len(exc.issues), path=path))
        raise SystemExit(EXIT_USAGE) from None


def _daemon_error(ctx: Context, status: int, body: Any) -> int:
    if isinstance(body, dict) and "code" in body:
        ctx.error(ctx.t(f"keys.error.{body['code']}", **(body.get("params") or {})))
    else:
        ctx.error(ctx.t("keys.cli.daemon_error", status=status,
                        detail=(body or {}).get("error", "") if isinstance(body, dict) else body))
    return EXIT_USAGE if 400 <= status < 500 and status != 401 else EXIT_FAILURE


# ---------------------------------------------------------------- status


def _state(t: Translator, ring: dict[str, Any]) -> str:
    if ring.get("overdue"):
        return t("keys.cli.state.overdue")
    return t("keys.cli.state.ok")


def cmd_status(plugin: KeysPlugin, args: argparse.Namespace, ctx: Context) -> int:
    config = _load(ctx, args.config)
    if args.local:
        try:
            manager = plugin.manager_for(config, ctx.hooks, short_lived=True)
            rings = manager.open_all()
            now = time.time()
            # No keyring yet: do not open the provider, which would make a KEK (as this user).
            kms = manager.provider.describe() if rings else {"provider": config.plugin("keys").kms.provider}
            doc = {"ok": True, "kms": kms,
                   "keyrings": [manager.describe(r, now) for r in rings], "federation": {}}
        except KeysError as exc:
            ctx.error(exc.translated(ctx.t))
            return EXIT_FAILURE
    else:
        status, doc = ctx.call(config, "GET", "/v1/keys")
        if status != 200:
            return _daemon_error(ctx, status, doc)
    if args.json:
        ctx.print(json.dumps(doc, indent=2, ensure_ascii=False))
        return EXIT_OK
    t = ctx.t
    if doc.get("error"):
        ctx.error(t("keys.cli.status.unavailable", region=config.region, detail=doc["error"]))
    if args.federation and not args.local:
        federation = doc.get("federation") or {}
        rows = []
        for region, entry in sorted(federation.items()):
            for ring in entry.get("keyrings", []):
                state = t("keys.cli.state.stale") if entry.get("stale") and not ring.get("overdue") \
                    else _state(t, ring)
                rows.append([region, ring["purpose"], ring["version"], t.duration(ring["age_s"]),
                             ring["fingerprint"][:16], state])
        ctx.print(t("keys.cli.status.federation_header", count=len(federation)))
        ctx.print(render_table([t("keys.cli.col.region"), t("keys.cli.col.purpose"), t("keys.cli.col.version"),
                                t("keys.cli.col.age"), t("keys.cli.col.fingerprint"), t("keys.cli.col.state")],
                               rows))
        return EXIT_OK
    kms = doc.get("kms") or {}
    ctx.print(t("keys.cli.status.header", region=config.region, provider=kms.get("provider", "?"),
                kek=kms.get("kek_id", "-")))
    rows = [[ring["purpose"], ring["version"], t.duration(ring["age_s"]),
             f"{ring['min_decryption_version']} / {ring['min_encryption_version']}",
             t.number(ring["encryptions_reserved"]), ring["key_id"], ring["fingerprint"][:16], _state(t, ring)]
            for ring in doc.get("keyrings", [])]
    ctx.print(render_table([t("keys.cli.col.purpose"), t("keys.cli.col.version"), t("keys.cli.col.age"),
                            t("keys.cli.col.minimums"), t("keys.cli.col.encryptions"), t("keys.cli.col.key_id"),
                            t("keys.cli.col.fingerprint"), t("keys.cli.col.state")], rows))
    return EXIT_OK


# ---------------------------------------------------------------- changes through the daemon


def cmd_rotate(args: argparse.Namespace, ctx: Context) -> int:
    config = _load(ctx, args.config)
    status, body = ctx.call(config, "POST", "/v1/keys/rotate", {"purposes": args.purpose or []})
    if status != 200:
        return _daemon_error(ctx, status, body)
    for meta in body.get("rotated", []):
        ctx.print(ctx.t("keys.cli.rotate.done", keyring=f"{meta['region']}/{meta['purpose']}",
                        version=meta["version"]))
    return EXIT_OK


def cmd_set(args: argparse.Namespace, ctx: Context) -> int:
    if args.min_decryption_version is None and args.min_encryption_version is None:
        ctx.error(ctx.t("keys.cli.set.nothing"))
        return EXIT_USAGE
    config = _load(ctx, args.config)
    status, body = ctx.call(config, "POST", f"/v1/keys/{args.purpose}/minimums",
                             {"min_decryption_version": args.min_decryption_version,
                              "min_encryption_version": args.min_encryption_version})
    if status != 200:
        return _daemon_error(ctx, status, body)
    meta = body["keyring"]
    ctx.print(ctx.t("keys.cli.set.done", keyring=f"{meta['region']}/{meta['purpose']}",
                    decryption=meta["min_decryption_version"], encryption=meta["min_encryption_version"]))
    return EXIT_OK


def cmd_rewrap(plugin: KeysPlugin, args: argparse.Namespace, ctx: Context) -> int:
    config = _load(ctx, args.config)
    if args.file:
        return _rewrap_files(plugin, config, args.file, ctx)
    if args.kek:
        status, body = ctx.call(config, "POST", "/v1/keys/rewrap-kek", {"purposes": args.purpose or []})
        if status != 200:
            return _daemon_error(ctx, status, body)
        _print_rewrapped(ctx, body["rewrapped"])
        return EXIT_OK
    status, body = ctx.call(config, "POST", "/v1/keys/rewrap", {"purposes": args.purpose or []})
    if status != 200:
        return _daemon_error(ctx, status, body)
    code = EXIT_OK
    for purpose, sources in sorted(body.get("results", {}).items()):
        keyring = f"{config.region}/{purpose}"
        if not sources:
            ctx.print(ctx.t("keys.cli.rewrap.no_sources", keyring=keyring))
        for name, result in sorted(sources.items()):
            if "error" in result:
                ctx.error(ctx.t("keys.cli.rewrap.source_failed", keyring=keyring, source=name,
                                detail=result["error"]))
                code = EXIT_FAILURE
            else:
                ctx.print(ctx.t("keys.cli.rewrap.source_done", keyring=keyring, source=name,
                                count=result["rewrapped"]))
    return code


def _rewrap_files(plugin: KeysPlugin, config: LoadedConfig, files: list[Path], ctx: Context) -> int:
    try:
        ring = plugin.manager_for(config, ctx.hooks, short_lived=True).keyring(SECRETS_PURPOSE, create=False)
    except KeysError as exc:
        ctx.error(exc.translated(ctx.t))
        return EXIT_FAILURE
    code = EXIT_OK
    for path in files:
        try:
            report = rewrap_file(path, ring)
        except OSError as exc:
            ctx.error(ctx.t("keys.cli.rewrap.unreadable", path=path, detail=exc.strerror or str(exc)))
            code = EXIT_USAGE
            continue
        for line, error in report.errors:
            ctx.error(f"{path}:{line}: {error.translated(ctx.t)}")
        if report.errors:
            ctx.error(ctx.t("keys.cli.rewrap.file_unchanged", path=path, count=len(report.errors)))
            code = EXIT_USAGE
        else:
            ctx.print(ctx.t("keys.cli.rewrap.file_done", path=path, rewrapped=report.rewrapped,
                            found=report.found, version=ring.latest_version))
    return code


def _print_rewrapped(ctx: Context, done: list[dict[str, Any]]) -> None:
    for item in done:
        ctx.print(ctx.t("keys.cli.rewrap.kek_done", keyring=item["keyring"], count=item["versions"],
                        provider=item["kek"].get("provider", "?"), kek=item["kek"].get("kek_id", "-")))


def cmd_migrate_kek(plugin: KeysPlugin, args: argparse.Namespace, ctx: Context) -> int:
    """Rewrap every keyring with ``keys.migrate_to``: through the daemon, or on the files with ``--local``."""
    config = _load(ctx, args.config)
    target = config.plugin("keys").migrate_to
    if target is None or target.provider != args.to:
        error = KEKError("no_migration_target") if target is None else \
            KEKError("migration_target_mismatch", to=args.to, configured=target.provider)
        ctx.error(error.translated(ctx.t))
        return EXIT_USAGE
    if args.local:
        try:
            manager = plugin.manager_for(config, ctx.hooks, short_lived=True)
            done = manager.rewrap_kek(migrate=True)
            kms = manager.provider.describe()
        except KeysError as exc:
            ctx.error(exc.translated(ctx.t))
            return EXIT_FAILURE
    else:
        status, body = ctx.call(config, "POST", "/v1/keys/rewrap-kek", {"to": args.to})
        if status != 200:
            return _daemon_error(ctx, status, body)
        done, kms = body["rewrapped"], body["kms"]
    _print_rewrapped(ctx, done)
    ctx.print(ctx.t("keys.cli.migrate.done", region=config.region, count=len(done),
                    provider=kms.get("provider", args.to), kek=kms.get("kek_id", "-")))
    return EXIT_OK


# ---------------------------------------------------------------- secrets


def _read_plaintext(ctx: Context) -> str | None:
    """The secret from a hidden prompt (twice) on a terminal, else all of stdin; never from argv."""
    stdin = sys.stdin
    if stdin is not None and stdin.isatty():
        first = getpass.getpass(ctx.t("keys.cli.encrypt.prompt"))
        second = getpass.getpass(ctx.t("keys.cli.encrypt.again"))
        if first != second:
            ctx.error(ctx.t("keys.cli.encrypt.mismatch"))
            return None
        return first
    try:
        text = stdin.read() if stdin is not None else ""
    except (OSError, UnicodeDecodeError) as exc:
        ctx.error(ctx.t("keys.cli.encrypt.unreadable", detail=str(exc)))
        return None
    if text.endswith("\n"):  # the newline `echo` or a heredoc adds is not part of the secret
        text = text[:-1]
        if text.endswith("\r"):
            text = text[:-1]
    return text


def cmd_encrypt(plugin: KeysPlugin, args: argparse.Namespace, ctx: Context) -> int:
    config = _load(ctx, args.config)
    plaintext = _read_plaintext(ctx)
    if plaintext is None:
        return EXIT_USAGE
    if not plaintext:
        ctx.error(ctx.t("keys.cli.encrypt.empty"))
        return EXIT_USAGE
    try:
        ring = plugin.manager_for(config, ctx.hooks, short_lived=True).keyring(SECRETS_PURPOSE)
        line = encrypt_config_value(ring, plaintext)
    except KeysError as exc:
        ctx.error(exc.translated(ctx.t))
        return EXIT_FAILURE
    ctx.print(line)
    ctx.error(ctx.t("keys.cli.encrypt.hint", region=config.region, version=ring.latest_version))
    return EXIT_OK
