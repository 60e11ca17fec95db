"""The ``meshd`` command line.

Exit codes: 0 success, 1 a runtime failure (daemon unreachable, bind error),
2 bad input (invalid config or arguments). Errors are one clear message per
problem, never a traceback. Every text goes through the translator
(``--lang`` or LANG); plugins add subcommands through ``meshd_cli_commands``.

Commands that talk to the running daemon use :class:`Context`:
``load_config`` (``--config``, else ``$MESHD_CONFIG``, else the one
``/etc/meshd/<region>.yaml``), ``call`` / ``get`` (exit 1 with a translated
reason when the daemon does not answer) and ``show`` (JSON or a table).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TextIO

import yaml

from . import __version__
from .config import DEFAULT_HTTP_PORT, ConfigError, ConfigIssue, LoadedConfig
from .i18n import LANGUAGES, Translator, detect_language
from .plugins import Hooks, disabled_in_config
from .yamlsource import format_keypath

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


@dataclass
class Context:
    """What a subcommand handler gets besides its parsed arguments."""

    t: Translator
    hooks: Hooks
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)

    def print(self, text: str = "") -> None:
        print(text, file=self.out)

    def error(self, text: str) -> None:
        print(text, file=self.err)

    def describe_issue(self, issue: ConfigIssue) -> str:
        """One config problem as ``file:line: key: message``, in the user's language where we can."""
        message = issue.message
        if issue.params is not None:
            message = self.t(f"cli.config_error.{issue.code}", **dict(issue.params))
        where = f"{issue.file}:{issue.line}" if issue.line else str(issue.file)
        return f"{where}: {format_keypath(issue.keypath)}: {message}"

    def config_path(self, given: str | Path | None) -> Path:
        """``--config``'s value, else ``$MESHD_CONFIG``, else the one region config in /etc/meshd; exit 2 if none."""
        from .configpath import ENV_VAR, ConfigNotFound, find_config

        try:
            return find_config(given)
        except ConfigNotFound as exc:
            if exc.candidates:
                self.error(self.t("cli.config_search.several", count=len(exc.candidates), dir=exc.directory,
                                  names=", ".join(p.name for p in exc.candidates), env=ENV_VAR))
            else:
                self.error(self.t("cli.config_search.none", dir=exc.directory, env=ENV_VAR))
            raise SystemExit(EXIT_USAGE) from None

    def load_config(self, path: str | Path | None) -> LoadedConfig:
        """Load and validate a daemon config (see :meth:`config_path`); print every issue and exit 2 if invalid."""
        path = self.config_path(path)
        try:
            return self.hooks.load_config(path)
        except ConfigError as exc:
            for issue in exc.issues:
                self.error(self.describe_issue(issue))
            self.error(self.t("cli.check_config.invalid", count=len(exc.issues), path=path))
            raise SystemExit(EXIT_USAGE) from None

    def client(self, config: LoadedConfig) -> Any:
        from .client import DaemonClient

        return DaemonClient(config)

    def call(self, config: LoadedConfig, method: str, path: str, body: Any = None, *, admin: bool | None = None,
             timeout: float | None = None, unreachable_key: str = "cli.daemon.unreachable") -> tuple[int, Any]:
        """The daemon's ``(status, JSON body)`` for one request.

        Admin (token) calls by default for anything but GET. When no daemon
        answers, says why in the user's language and exits 1; when the
        daemon's address is not loopback, refuses (the token would cross the
        network in clear) and exits 2. ``unreachable_key`` lets a command add
        its own advice; it gets ``region``, ``url``, ``reason`` and ``detail``.
        """
        from .client import DaemonUnreachable, DaemonURLRefused

        client = self.client(config)
        if timeout is not None:
            client.timeout = timeout
        try:
            answer: tuple[int, Any] = client.request(method, path, body,
                                                     admin=method != "GET" if admin is None else admin)
            return answer
        except DaemonURLRefused as exc:
            self.error(self.t("cli.daemon.not_loopback", url=exc.url, listen=config.daemon.http.listen,
                              path=config.path))
            raise SystemExit(EXIT_USAGE) from None
        except DaemonUnreachable as exc:
            if exc.reason in ("token", "no_token"):
                self.error(self.t(f"cli.daemon.{exc.reason}", path=exc.path, detail=exc.detail))
            else:
                reason = self.t(f"cli.daemon.reason.{exc.reason}", detail=exc.detail,
                                seconds=self.t.number(client.timeout))
                self.error(self.t(unreachable_key, region=config.region, url=exc.url, reason=reason, detail=reason))
            raise SystemExit(EXIT_FAILURE) from None

    def get(self, config: LoadedConfig, path: str) -> Any:
        """The body of the daemon's 200 answer to ``GET path``; anything else is said and exits 1."""
        status, body = self.call(config, "GET", path)
        if status != 200:
            detail = body.get("error", "") if isinstance(body, dict) else ""
            self.error(self.t("cli.daemon.error", region=config.region, status=status, detail=detail))
            raise SystemExit(EXIT_FAILURE)
        return body

    def show(self, doc: Any, as_json: bool, render: Callable[[Any], str]) -> None:
        """``doc`` as indented JSON (``--json``), else as ``render(doc)`` for people."""
        self.print(json.dumps(doc, indent=2, ensure_ascii=False) if as_json else render(doc))


def help_handler(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace, Context], int]:
    """The handler of a command group run without a subcommand (``meshd keys``): its help on stderr, exit 2."""

    def handler(_args: argparse.Namespace, ctx: Context) -> int:
        parser.print_help(ctx.err)
        return EXIT_USAGE

    return handler


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ---------------------------------------------------------------- commands


def cmd_check_config(args: argparse.Namespace, ctx: Context) -> int:
    config = ctx.load_config(args.path)
    ctx.print(ctx.t("cli.check_config.ok", path=args.path, region=config.region,
                    federation=config.federation, regions=len(config.region_map.regions)))
    return EXIT_OK


def cmd_run(args: argparse.Namespace, ctx: Context) -> int:
    from .logs import setup_logging

    config = ctx.load_config(args.config)
    setup_logging(config.daemon.log.level, args.log_format or config.daemon.log.format)
    log = logging.getLogger("meshd")
    for name in ctx.hooks.disable(config.daemon.plugins.disabled):
        log.warning("plugins.disabled names %r, which is not an installed plugin", name)
    return run_daemon(config, ctx.hooks, log)


def run_daemon(config: LoadedConfig, hooks: Hooks, log: logging.Logger) -> int:
    """Build a daemon of ``config`` and serve it until SIGTERM; the exit code (also for ``meshd ingest``)."""
    import anyio

    from .daemon import Daemon, serve

    try:
        daemon = Daemon(config, hooks)
    except (OSError, ValueError) as exc:
        log.error("cannot start: %s", exc)
        return EXIT_FAILURE
    try:
        anyio.run(serve, daemon, backend="asyncio")
    except OSError as exc:
        log.error("daemon failed: %s", exc)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def cmd_init(args: argparse.Namespace, ctx: Context) -> int:
    from .bootstrap import ROUTES_FILE, SAMPLE_METER_NAMES, InitError, init_federation

    try:
        result = init_federation(
            federation=args.federation, regions_file=Path(args.regions), nats_url=args.nats, out=Path(args.out),
            http_base_port=args.http_base_port, state_dir_template=args.state_dir,
            shared_files=ctx.hooks.federation_files(), force=args.force, lang=ctx.t.lang,
        )
    except ConfigError as exc:
        for issue in exc.issues:
            ctx.error(ctx.describe_issue(issue))
        return EXIT_USAGE
    except InitError as exc:
        ctx.error(str(exc))
        return EXIT_USAGE
    ctx.print(ctx.t("cli.init.done", out=result.out, count=len(result.regions), regions=", ".join(result.regions)))
    ctx.print(_nats_hint(ctx.t, result.nats_conf))
    if result.meters:
        ctx.print(ctx.t("cli.init.meters", meters=", ".join(SAMPLE_METER_NAMES)))
    if result.log_only_routes:
        ctx.print(ctx.t("cli.init.alerts_log_only", path=result.out / ROUTES_FILE))
    return EXIT_OK


def _nats_hint(t: Translator, conf: Path) -> str:
    """How to start the bus, naming the binary found: a bare ``nats-server`` works only inside the virtualenv."""
    from .natsserver import NatsServerNotFound, find_nats_server

    try:
        return t("cli.init.nats", path=conf, binary=find_nats_server())
    except NatsServerNotFound as exc:
        return t("cli.init.nats_missing", path=conf, detail=str(exc))


def cmd_keygen(args: argparse.Namespace, ctx: Context) -> int:
    from .identity import generate_key, key_id, public_key_b64, write_private_key

    out = Path(args.out)
    if out.exists() and not args.force:
        ctx.error(ctx.t("cli.keygen.exists", path=out))
        return EXIT_USAGE
    key = generate_key()
    write_private_key(key, out)
    entry = {"key_id": key_id(key.public_key()), "public_key": public_key_b64(key.public_key())}
    ctx.print(ctx.t("cli.keygen.done", path=out))
    # The entry as trust.yaml holds it, ready to paste under its keys:.
    ctx.print(yaml.safe_dump({args.region or "REGION": entry}, sort_keys=False).rstrip())
    return EXIT_OK


def cmd_status(args: argparse.Namespace, ctx: Context) -> int:
    import time

    from .statusview import render

    config = ctx.load_config(args.config)
    regions = config.region_map.regions
    ctx.show(ctx.get(config, "/status"), args.json, lambda doc: render(ctx.t, doc, regions, time.time()))
    return EXIT_OK


def cmd_reload(args: argparse.Namespace, ctx: Context) -> int:
    config = ctx.load_config(args.config)
    status, _ = ctx.call(config, "POST", "/v1/reload")
    ctx.print(ctx.t("cli.reload.ok") if status == 200 else ctx.t("cli.reload.rejected"))
    return EXIT_OK if status == 200 else EXIT_USAGE


def cmd_demo(args: argparse.Namespace, ctx: Context) -> int:
    from .demo import run_demo

    return run_demo(args, ctx)


def cmd_version(_args: argparse.Namespace, ctx: Context) -> int:
    ctx.print(f"meshd {__version__}")
    return EXIT_OK


# ---------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # exit 2 with one line, as argparse does, minus the usage dump noise
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n")


def build_parser(t: Translator, hooks: Hooks, plugin_commands: bool = True) -> argparse.ArgumentParser:
    """The ``meshd`` parser; without ``plugin_commands``, only the core commands whose modules the daemon loads.

    ``meshd tenants`` and the plugins' commands bring their own modules (tenant files, clients, report
    builders): ``meshd run`` neither parses them nor keeps those modules for its lifetime.
    """
    parser = _Parser(prog="meshd", description=t("cli.description"))
    parser.add_argument("--lang", choices=LANGUAGES, help=t("cli.opt.lang"))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("run", help=t("cli.run.help"))
    p.add_argument("--config", help=t("cli.opt.config"))
    p.add_argument("--log-format", choices=["auto", "json", "text"], help=t("cli.run.log_format"))
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("check-config", help=t("cli.check_config.help"))
    p.add_argument("path", help=t("cli.opt.config"))
    p.set_defaults(handler=cmd_check_config)

    p = sub.add_parser("init", help=t("cli.init.help"))
    p.add_argument("--federation", required=True, help=t("cli.init.federation"))
    p.add_argument("--regions", required=True, help=t("cli.init.regions"))
    p.add_argument("--nats", default="nats://127.0.0.1:4222", help=t("cli.init.nats_url"))
    p.add_argument("--out", required=True, help=t("cli.init.out"))
    p.add_argument("--http-base-port", type=int, default=DEFAULT_HTTP_PORT, help=t("cli.init.http_base_port"))
    p.add_argument("--state-dir", default="state/{region}", help=t("cli.init.state_dir"))
    p.add_argument("--force", action="store_true", help=t("cli.init.force"))
    p.set_defaults(handler=cmd_init)

    p = sub.add_parser("keygen", help=t("cli.keygen.help"))
    p.add_argument("--out", required=True, help=t("cli.keygen.out"))
    p.add_argument("--region", help=t("cli.keygen.region"))
    p.add_argument("--force", action="store_true", help=t("cli.keygen.force"))
    p.set_defaults(handler=cmd_keygen)

    p = sub.add_parser("status", help=t("cli.status.help"))
    p.add_argument("--config", help=t("cli.opt.config"))
    p.add_argument("--json", action="store_true", help=t("cli.opt.json"))
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser("reload", help=t("cli.reload.help"))
    p.add_argument("--config", help=t("cli.opt.config"))
    p.set_defaults(handler=cmd_reload)

    p = sub.add_parser("demo", help=t("cli.demo.help"))
    p.add_argument("--regions", help=t("cli.demo.regions"))
    p.add_argument("--kill", metavar="REGION", help=t("cli.demo.kill"))
    p.add_argument("--dir", help=t("cli.demo.dir"))
    p.add_argument("--once", action="store_true", help=t("cli.demo.once"))
    p.add_argument("--timeout", type=float, default=0, help=t("cli.demo.timeout"))
    p.set_defaults(handler=cmd_demo)

    p = sub.add_parser("version", help=t("cli.version.help"))
    p.set_defaults(handler=cmd_version)

    if plugin_commands:
        from .tenantcli import add_commands as add_tenant_commands  # a core command: the directory is core

        add_tenant_commands(sub, t)
        hooks.cli_commands(sub, t)
    _config_from_environment(parser)
    return parser


def _config_from_environment(parser: argparse.ArgumentParser) -> None:
    """Make every ``--config`` optional, plugins' included: :meth:`Context.config_path` finds the default.

    argparse has no public way to walk subcommands; ``_actions`` has been stable since Python 3.2.
    """
    for action in parser._actions:
        if "--config" in action.option_strings:
            action.required = False
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                _config_from_environment(child)


def _option(argv: Sequence[str], name: str) -> str | None:
    """The last value of option ``name`` (``--name V`` or ``--name=V``) in ``argv``, read before the parser exists."""
    found = None
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            found = argv[i + 1]
        elif arg.startswith(name + "="):
            found = arg.split("=", 1)[1]
    return found


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand of ``argv``, found before the parser exists."""
    words = [a for i, a in enumerate(argv) if not a.startswith("-") and (i == 0 or argv[i - 1] != "--lang")]
    return words[0] if words else None


def load_hooks(argv: Sequence[str]) -> Hooks:
    """The plugins for this command line: for ``meshd run``, all but those its config disables.

    The config is only peeked at here (the parser, which plugins extend, does
    not exist yet); a disabled plugin's modules are then never imported, so
    the daemon does not carry them. Other commands load every plugin: they
    may need any plugin's subcommand, and ``check-config`` validates every
    section, disabled plugins' included.
    """
    if _command(argv) != "run":
        return Hooks.load()
    from .configpath import ConfigNotFound, find_config

    try:
        path: Path | None = find_config(_option(argv, "--config"))
    except ConfigNotFound:
        path = None  # said properly, in the user's language, when the command loads its config
    return Hooks.load(blocked=disabled_in_config(path))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # --lang must be known before the parser (whose help is translated) exists.
    t = Translator(detect_language(_option(argv, "--lang")))
    logging.basicConfig(level=os.environ.get("MESHD_CLI_LOG", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    hooks = load_hooks(argv)
    # The daemon needs none of the plugins' subcommands nor `meshd tenants` (nor their modules).
    parser = build_parser(t, hooks, plugin_commands=_command(argv) != "run")
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_USAGE
    del parser  # `meshd run` would otherwise keep every command's parser for the daemon's lifetime
    ctx = Context(t, hooks)
    try:
        return int(handler(args, ctx) or 0)
    except SystemExit as exc:
        return int(exc.code or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
