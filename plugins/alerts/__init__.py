"""The alerts plugin: Alertmanager-style routing, one notification per group federation-wide, a durable outbox.

Plugins raise alerts with ``await daemon.hooks.alert(daemon, meshd.Alert(...))``;
this plugin routes them through ``alert_routes.yaml`` (grouping, inhibition,
silences, time intervals), decides through a JetStream KV notification log
which daemon tells each receiver, and delivers from a SQLite outbox through
``meshd_notify`` (builtin: apprise, plus PagerDuty Events API v2 and
Opsgenie for trigger *and* resolve). See docs/alerts.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from meshd.alerting import Alert, DeliveryResult, Notification
from meshd.config import ConfigError, ConfigIssue, LoadedConfig
from meshd.hookspecs import hookimpl
from meshd.httpapi import Route
from meshd.i18n import Translator
from meshd.service import Service

from . import api
from .config import ROUTES_FILE, SECTION, AlertsConfig
from .notify import deliver
from .routes import load_routes
from .runtime import AlertsRuntime, load_tree
from .targets import TargetError, parse_target

if TYPE_CHECKING:
    from meshd.daemon import Daemon


def routes_path(config: LoadedConfig) -> Path:
    """The routing file's path; relative to the daemon config's directory (also when the section is absent)."""
    path = Path(config.plugin(SECTION).routes_file)
    return path if path.is_absolute() else config.path.parent / path


def _explicit(config: LoadedConfig) -> bool:
    """Did the config name a routing file (then it must exist) rather than rely on the default?"""
    section = config.source.data.get(SECTION) if isinstance(config.source.data, dict) else None
    return isinstance(section, dict) and "routes_file" in section


class AlertsPlugin:
    """Per-daemon instance; all state lives on ``self.runtime``."""

    def __init__(self) -> None:
        self.runtime: AlertsRuntime | None = None
        self._early: list[Alert] = []
        self._limiter: anyio.CapacityLimiter | None = None
        self._deadman_started = False

    # ------------------------------------------------------------ configuration

    @hookimpl
    def meshd_config_models(self) -> dict[str, Any]:
        return {SECTION: AlertsConfig}

    @hookimpl
    def meshd_federation_files(self) -> list[str]:
        return [ROUTES_FILE]

    @hookimpl
    def meshd_validate_config(self, config: LoadedConfig) -> list[ConfigIssue]:
        path = routes_path(config)
        if not path.exists():
            if not _explicit(config):
                return []  # no routing file: alerts are logged only (said at startup)
            keypath = (SECTION, "routes_file")
            return [ConfigIssue(config.path, keypath, f"{path}: file not found", config.line_of(keypath),
                                "missing_file")]
        settings: AlertsConfig = config.plugin(SECTION)
        issues: list[ConfigIssue] = []
        for name, value in settings.secrets.items():
            if type(value) is str:  # plain (not !encrypted): its URL can be checked now
                try:
                    parse_target(value)
                except TargetError as exc:
                    keypath = (SECTION, "secrets", name)
                    issues.append(ConfigIssue(config.path, keypath, str(exc), config.line_of(keypath)))
        try:
            load_routes(path, secrets=settings.secrets, secrets_file=config.path)
        except ConfigError as exc:
            issues.extend(exc.issues)
        return issues

    @hookimpl
    def meshd_cli_commands(self, subparsers: argparse._SubParsersAction, t: Translator) -> None:
        from . import cli  # only commands that parse a command line need it, not the daemon
        cli.add_commands(subparsers, t)

    # ------------------------------------------------------------ lifecycle

    @hookimpl
    async def meshd_startup(self, daemon: Daemon) -> None:
        config = daemon.config
        settings: AlertsConfig = config.plugin(SECTION)
        tree, log_only = load_tree(routes_path(config), _explicit(config))
        runtime = AlertsRuntime(daemon, settings, tree, log_only)
        await runtime.start()
        self.runtime = runtime
        for alert in self._early:
            runtime.ingest(alert)
        self._early.clear()
        if log_only:
            daemon.log.getChild("alerts").warning(
                "%s in %s: alerts are logged, not sent (see docs/alerts.md)", runtime.log_only_reason(), tree.path)

    @hookimpl
    def meshd_services(self, daemon: Daemon) -> Sequence[Service]:
        rt = self.runtime
        if rt is None:
            return []
        services = [Service("alerts-dispatch", rt.dispatch), Service("alerts-delivery", rt.delivery.run),
                    Service("alerts-silences", rt.silences_service)]
        return services + self._deadman(rt)

    def _deadman(self, rt: AlertsRuntime) -> list[Service]:
        """The dead man's switch, once, when there is a receiver to tell."""
        if self._deadman_started or not rt.settings.deadman.enabled or rt.log_only:
            return []
        self._deadman_started = True
        return [Service("alerts-deadman", rt.deadman)]

    @hookimpl
    async def meshd_reload(self, daemon: Daemon, previous: LoadedConfig) -> None:
        if self.runtime is not None:
            await self.runtime.reload(daemon.config.plugin(SECTION), routes_path(daemon.config),
                                      _explicit(daemon.config))
            # Receivers filled in after `meshd init`: the heartbeat starts without a restart.
            deadman = self._deadman(self.runtime)
            if deadman:
                await daemon.start_services(SECTION, deadman)

    # ------------------------------------------------------------ alerts

    @hookimpl
    def meshd_alert(self, daemon: Daemon, alert: Alert) -> None:
        if self.runtime is None:
            if len(self._early) < 10000:
                self._early.append(alert)  # raised before our startup ran: kept for it
            return
        self.runtime.ingest(alert)

    @hookimpl(trylast=True)
    async def meshd_notify(self, daemon: Daemon, notification: Notification) -> DeliveryResult:
        if self._limiter is None:
            concurrency = self.runtime.settings.delivery.concurrency if self.runtime else 8
            self._limiter = anyio.CapacityLimiter(concurrency * 2)
        return await deliver(notification, self._limiter)

    # ------------------------------------------------------------ observability

    @hookimpl
    async def meshd_status(self, daemon: Daemon) -> dict[str, Any]:
        if self.runtime is None:
            return {}
        return {"alerts": await self.runtime.status()}

    @hookimpl
    def meshd_http_routes(self, daemon: Daemon) -> list[Route]:
        return api.routes(daemon, lambda: self.runtime)
