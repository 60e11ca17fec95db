"""The health plugin's hook implementations: config, probes, verdict, /status, /healthz, CLI."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from meshd import Daemon, HealthCheck, HealthStatus, LoadedConfig, Service, hookimpl
from meshd.config import ConfigIssue
from meshd.i18n import Translator
from meshd.plugins import Hooks

from .engine import HealthEngine
from .kind_command import CommandProbe
from .kind_host import CpuProbe, DiskProbe, LoadProbe, MemoryProbe
from .kind_http import HttpProbe
from .kind_tcp import TcpProbe
from .settings import SECTION, HealthConfig, resolve_probes

BUILTIN_KINDS: dict[str, type] = {cls.kind: cls for cls in
                                  (TcpProbe, HttpProbe, CommandProbe, CpuProbe, MemoryProbe, DiskProbe, LoadProbe)}


class HealthPlugin:
    """Probes this region's own services and host, and turns the results into the region's verdict."""

    def __init__(self) -> None:
        self.engine: HealthEngine | None = None
        self.fence: dict[str, Any] | None = None
        """``{"reason", "since"}`` while this region is fenced (``meshd_region_fenced``), else None."""

    # ------------------------------------------------------------ configuration

    @hookimpl
    def meshd_config_models(self) -> dict[str, type[BaseModel]]:
        return {SECTION: HealthConfig}

    @hookimpl
    def meshd_validate_config(self, config: LoadedConfig, hooks: Hooks) -> Sequence[ConfigIssue]:
        _, issues = resolve_probes(config, hooks.probe_kinds())
        return issues

    @hookimpl
    def meshd_probe_kinds(self) -> dict[str, type]:
        return dict(BUILTIN_KINDS)

    @hookimpl
    def meshd_cli_commands(self, subparsers: argparse._SubParsersAction, t: Translator) -> None:
        from . import cli  # only commands that parse a command line need it, not the daemon
        cli.add_commands(subparsers, t)

    # ------------------------------------------------------------ lifecycle

    @hookimpl
    def meshd_startup(self, daemon: Daemon) -> None:
        self.engine = HealthEngine(daemon)

    @hookimpl
    def meshd_services(self, daemon: Daemon) -> list[Service]:
        assert self.engine is not None
        return [Service("health-probes", self.engine.run)]

    @hookimpl
    def meshd_reload(self, daemon: Daemon, previous: LoadedConfig) -> None:
        if self.engine is not None and previous.plugin(SECTION) != daemon.plugin_config(SECTION):
            self.engine.reconfigure()

    # ------------------------------------------------------------ observability

    @hookimpl
    def meshd_status(self, daemon: Daemon) -> dict[str, Any] | None:
        if self.engine is None:
            return None
        doc = self.engine.status()
        # A fenced region reports "fenced" whatever its probes say; "verdict" keeps what they say.
        doc["verdict"], doc["fenced"] = doc["status"], self.fence
        if self.fence is not None:
            doc["status"] = "fenced"
        return {"health": doc}

    @hookimpl
    def meshd_region_fenced(self, fenced: bool, reason: str) -> None:
        self.fence = {"reason": reason, "since": time.time()} if fenced else None

    @hookimpl
    def meshd_health_checks(self, daemon: Daemon) -> list[HealthCheck]:
        if self.engine is None:
            return []
        report = self.engine.report
        detail = report.status.value + (f": {', '.join(report.reasons)}" if report.reasons else "")
        status = report.status.value
        if self.fence is not None:
            detail, status = f"fenced ({self.fence['reason']}); probes: {detail}", "fenced"
        return [HealthCheck("health", report.status is not HealthStatus.DOWN, detail,
                            {"status": status, "reasons": list(report.reasons)})]

