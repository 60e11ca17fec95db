"""The sla plugin: SLIs recorded from the region's probes, membership and failovers; objectives, budgets, alerts.

See docs/sla.md. The pure parts (latency histograms, the history store,
window SLIs, objectives, burn rates) are plain modules usable without a
daemon; the plugin class wires them to the hooks.
"""

from __future__ import annotations

import re
from typing import Any

import meshd
from meshd import Service, hookimpl
from meshd.config import ConfigError, ConfigIssue, LoadedConfig
from meshd.httpapi import Request, Response, Route

from .config import SECTION, SlaConfig
from .latency import PRECISION, Histogram
from .period import BadPeriod
from .recorder import Recorder
from .runtime import QUERY_KIND, Runtime, UnknownTenant
from .sli import WindowSLI, window_sli
from .slo import SLIS, Objective, Slo, SloFile, Window, load_slo, references, slo_path
from .store import Sample, SampleStore
from .summary import Merged, Part, merge, summarize
from .tenant import TenantSLI, mixture_quantile, shares, tenant_sli

__all__ = ["PRECISION", "SLIS", "Histogram", "Objective", "Recorder", "Runtime", "Sample", "SampleStore", "SlaConfig",
           "Merged", "Part", "SlaPlugin", "Slo", "SloFile", "Window", "WindowSLI", "load_slo", "references", "slo_path",
           "merge", "summarize", "window_sli", "TenantSLI", "UnknownTenant", "mixture_quantile", "shares",
           "tenant_sli"]


class SlaPlugin:
    def __init__(self) -> None:
        self.runtime: Runtime | None = None

    @hookimpl
    def meshd_config_models(self) -> dict[str, type]:
        return {SECTION: SlaConfig}

    @hookimpl
    async def meshd_startup(self, daemon: meshd.Daemon) -> None:
        runtime = Runtime(daemon)
        await runtime.open()
        self.runtime = runtime
        await daemon.bus.subscribe(QUERY_KIND, runtime.on_query, target=daemon.region)

    @hookimpl
    def meshd_http_routes(self, daemon: meshd.Daemon) -> list[Route]:
        return [Route("GET", "/v1/sla", self._sla_route), Route("GET", "/v1/sla/credits", self._credits_route),
                Route("GET", "/v1/sla/daily", self._daily_route), Route("GET", "/sla", self._page_route),
                Route("GET", "/sla/chart.umd.min.js", self._chart_route)]

    async def _daily_route(self, request: Request) -> Response:
        if self.runtime is None:
            return Response.json({"error": "the daemon is starting", "code": "not_running"}, 503)
        try:
            days = int((request.query.get("days") or ["90"])[0])
        except ValueError:
            days = 0
        if not 1 <= days <= 400:
            return Response.json({"error": "days must be a whole number from 1 to 400", "code": "bad_days"}, 400)
        return Response.json(await self.runtime.dashboard(days))

    async def _page_route(self, request: Request) -> Response:
        from .page import render_dashboard

        lang = (request.query.get("lang") or [""])[0]
        return Response(200, render_dashboard(lang or None, self.runtime).encode(), "text/html; charset=utf-8")

    async def _chart_route(self, request: Request) -> Response:
        from .page import chart_js

        return Response(200, chart_js(), "text/javascript; charset=utf-8")

    async def _credits_route(self, request: Request) -> Response:
        if self.runtime is None:
            return Response.json({"error": "the daemon is starting", "code": "not_running"}, 503)
        period = (request.query.get("period") or [""])[0]
        if not re.match(r"^\d{4}-\d{2}$", period):
            return Response.json({"error": f"period {period!r}: credits are per calendar month (YYYY-MM)",
                                  "code": "bad_period"}, 400)
        try:
            return Response.json(await self.runtime.all_credits(period))
        except BadPeriod as exc:
            return Response.json({"error": str(exc), "code": "bad_period"}, 400)

    async def _sla_route(self, request: Request) -> Response:
        if self.runtime is None:
            return Response.json({"error": "the daemon is starting", "code": "not_running"}, 503)
        # No period: each plan over its own windows from slo.yaml.
        period: str | None = (request.query.get("period") or [None])[0]  # type: ignore[list-item]
        plan = (request.query.get("plan") or [None])[0]
        tenant = (request.query.get("tenant") or [None])[0]
        try:
            if tenant:
                return Response.json(await self.runtime.tenant_view(tenant, period))
            return Response.json(await self.runtime.federation(period, plan))
        except BadPeriod as exc:
            return Response.json({"error": str(exc), "code": "bad_period"}, 400)
        except UnknownTenant as exc:
            return Response.json({"error": str(exc.args[0]), "code": "unknown_tenant"}, 400)
        except KeyError:
            return Response.json({"error": f"unknown plan {plan!r} (known: {', '.join(self.runtime.slo.plans)})",
                                  "code": "unknown_plan"}, 400)

    @hookimpl
    def meshd_services(self, daemon: meshd.Daemon) -> list[Service]:
        assert self.runtime is not None
        return [Service("sla-recorder", self.runtime.run)]

    @hookimpl
    async def meshd_shutdown(self, daemon: meshd.Daemon) -> None:
        if self.runtime is not None:
            await self.runtime.stop()

    @hookimpl
    def meshd_probe_result(self, probe: str, kind: str, ok: bool, latency_ms: float, at: float) -> None:
        if self.runtime is not None:
            self.runtime.recorder.observe(probe, ok, latency_ms, at, kind)

    @hookimpl
    def meshd_member_changed(self, member: Any) -> None:
        if self.runtime is not None:
            self.runtime.recorder.member(member.region, member.state.value)

    @hookimpl
    def meshd_failover_committed(self, decision: Any) -> None:
        if self.runtime is not None:
            self.runtime.recorder.decision(decision.region, decision.action, decision.target)

    @hookimpl
    async def meshd_invoice_adjustments(self, tenant: str, period: str, lang: str) -> list[Any]:
        if self.runtime is None:
            raise RuntimeError("the sla plugin is starting: no credit can be computed yet")
        return await self.runtime.credits(tenant, period, lang)

    @hookimpl
    def meshd_status(self, daemon: meshd.Daemon) -> dict[str, Any]:
        return {SECTION: self.runtime.status() if self.runtime else {"state": "starting"}}

    @hookimpl
    def meshd_validate_config(self, config: LoadedConfig) -> list[ConfigIssue]:
        settings: SlaConfig = config.plugin(SECTION)
        try:
            load_slo(slo_path(config, settings.slo), **references(config))
        except ConfigError as exc:
            return list(exc.issues)
        return []

    @hookimpl
    def meshd_cli_commands(self, subparsers: Any, t: Any) -> None:
        from .cli import add_commands

        add_commands(subparsers, t)

    @hookimpl
    def meshd_federation_files(self) -> list[str]:
        return ["slo.yaml"]
