"""The routing plugin: :mod:`~meshd_plugins.routing.engine` wired to membership, failover decisions, the bus and the CLI.

Each daemon keeps one :class:`~meshd_plugins.routing.engine.RoutingEngine` fed by
``meshd_member_changed``, ``meshd_region_health_changed`` and
``meshd_failover_committed`` (the builtin failover action: a committed
failover of R to T excludes R and sends R's tenants to T within their
residency; a failback brings R back). It answers:

* signed route requests on the bus (``meshd.<fed>.route.<sender>.<this region>``);
* ``GET /v1/route?tenant=T&from=LOC[&sovereignty=EU][&session=S]`` on the local HTTP API;
* ``meshd route --tenant T --from LOC`` (through that HTTP route).
"""

from __future__ import annotations

import argparse
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

import meshd
from meshd import hookimpl
from meshd.config import ConfigError, LoadedConfig
from meshd.envelope import Envelope
from meshd.httpapi import Request, Response, Route
from meshd.transport import Message

from . import api
from .config import RoutingConfig, rtt_table, validate
from .engine import RoutingEngine, RoutingError

KIND = "route"
"""Bus kind of route requests: ``meshd.<federation>.route.<sender>.<target>``."""
REQUEST_TYPE = "route.request"
REPLY_TYPE = "route.result"


class _EngineCollector:
    """Decision counters kept by the engine as plain ints, exported at scrape time (no cost per decision)."""

    def __init__(self, plugin: RoutingPlugin):
        self.plugin = plugin

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        engine = self.plugin.engine
        decisions = CounterMetricFamily("meshd_route_decisions", "Routing decisions, by chosen region",
                                        labels=["region"])
        none = CounterMetricFamily("meshd_route_no_eligible_region",
                                   "Routing requests refused because no region of the residency was eligible",
                                   labels=["residency"])
        failed = GaugeMetricFamily("meshd_route_region_excluded",
                                   "1 while routing sends no traffic to a region, by reason",
                                   labels=["region", "reason"])
        sessions = GaugeMetricFamily("meshd_route_sessions", "Sticky sessions remembered")
        if engine is not None:
            for region, count in engine.decisions.items():
                decisions.add_metric([region], count)
            for residency, count in engine.no_eligible.items():
                none.add_metric([residency], count)
            for region, why in engine.excluded().items():
                failed.add_metric([region, why], 1)
            sessions.add_metric([], engine.session_count)
        yield from (decisions, none, failed, sessions)


class RoutingPlugin:
    """Routes tenants' requests: nearest healthy region within residency, failover-aware."""

    def __init__(self) -> None:
        self.engine: RoutingEngine | None = None
        self._requests: Any = None
        self.fenced: str | None = None
        """Why this region is fenced (``meshd_region_fenced``), or None: every answer then says so."""

    # ------------------------------------------------------------ engine

    def _ensure(self, daemon: Any) -> RoutingEngine:
        """The engine, built on first use: other plugins' hooks may fire before our startup."""
        if self.engine is None:
            section: RoutingConfig = daemon.plugin_config("routing")
            self.engine = RoutingEngine(daemon.regions, daemon.config.tenants, settings=section.settings(),
                                        rtt=rtt_table(section), places=section.places(), local_region=daemon.region)
            self._install_filter(daemon)
            directory = daemon.config.tenants
            if directory is not None and hasattr(directory, "subscribe"):
                # A registry tenant created or changed at run time is routed without a restart.
                directory.subscribe(self._on_tenant_change)
            self._requests = daemon.metrics.counter("route_requests_total",
                                                    "Route requests answered, by API and result", ["api", "result"])
        return self.engine

    def _on_tenant_change(self, change: Any) -> None:
        if self.engine is not None:
            self.engine.set_tenant(change.tenant_id, change.tenant)

    def _install_filter(self, daemon: Any) -> None:
        # Calling pluggy per decision costs microseconds; only pay it when a filter exists.
        assert self.engine is not None
        if daemon.hooks.pm.hook.meshd_route_filter.get_hookimpls():
            self.engine.route_filter = lambda request, candidates: daemon.hooks.route_filter(daemon, request,
                                                                                              candidates)
        else:
            self.engine.route_filter = None

    def _log(self, daemon: Any) -> Any:
        return daemon.log.getChild("routing")

    # ------------------------------------------------------------ configuration and CLI

    @hookimpl
    def meshd_config_models(self) -> dict[str, type]:
        return {"routing": RoutingConfig}

    @hookimpl
    def meshd_validate_config(self, config: LoadedConfig) -> list[meshd.ConfigIssue]:
        return validate(config)

    @hookimpl
    def meshd_federation_files(self) -> list[str]:
        return ["rtt_table.yaml"]

    @hookimpl
    def meshd_cli_commands(self, subparsers: argparse._SubParsersAction, t: meshd.Translator) -> None:
        from . import cli  # only commands that parse a command line need it, not the daemon
        cli.add_commands(subparsers, t)

    # ------------------------------------------------------------ lifecycle

    @hookimpl
    async def meshd_startup(self, daemon: Any) -> None:
        self._ensure(daemon)
        section: RoutingConfig = daemon.plugin_config("routing")
        if section.service:
            await daemon.bus.subscribe(KIND, lambda env, msg: self._on_request(daemon, env, msg),
                                       target=daemon.region)
        self._log(daemon).info("routing ready: %d regions, %d tenants, %s", len(daemon.regions),
                               len(self.engine.tenants) if self.engine else 0,
                               "answering route requests on the bus" if section.service else "bus service off")

    @hookimpl
    async def meshd_reload(self, daemon: Any, previous: LoadedConfig) -> None:
        engine = self._ensure(daemon)
        section: RoutingConfig = daemon.plugin_config("routing")
        try:
            table = rtt_table(section)
        except ConfigError as exc:
            self._log(daemon).error("routing keeps its previous RTT table: %s", exc)
            table = engine.rtt
        engine.reconfigure(daemon.regions, daemon.config.tenants, settings=section.settings(), rtt=table,
                           places=section.places())
        self._install_filter(daemon)
        if section.service != previous.plugin("routing").service:
            self._log(daemon).warning("routing.service changed; it takes effect after a restart")

    # ------------------------------------------------------------ federation events

    @hookimpl
    def meshd_member_changed(self, daemon: Any, member: meshd.Member, previous: meshd.Member | None) -> None:
        engine = self._ensure(daemon)
        before = engine.exclusion(member.region)
        was_stale = engine.view_stale
        engine.set_member(member.region, member.state, member.health, member.rtt_ms)
        self._log_change(daemon, member.region, before)
        if engine.view_stale != was_stale:
            self._log(daemon).warning("routing view is %s", "stale (this daemon is isolated)" if engine.view_stale
                                      else "live again")

    @hookimpl
    def meshd_region_health_changed(self, daemon: Any, report: meshd.HealthReport) -> None:
        engine = self._ensure(daemon)
        before = engine.exclusion(daemon.region)
        engine.set_health(daemon.region, report.status)
        self._log_change(daemon, daemon.region, before)

    @hookimpl
    def meshd_bus_state(self, daemon: Any, connected: bool) -> None:
        engine = self._ensure(daemon)
        if engine.view_stale == connected:
            engine.view_stale = not connected
            self._log(daemon).warning("routing view is %s", "live again" if connected
                                      else "stale (bus lost: states are the last ones known)")

    @hookimpl
    def meshd_failover_committed(self, daemon: Any, decision: meshd.Decision) -> None:
        engine = self._ensure(daemon)
        if not engine.apply_decision(decision):
            return
        log = self._log(daemon)
        if decision.action == "failover":
            where = decision.target or "the next eligible region of its residency (the decision names no target)"
            log.warning("routing: %s failed over (term %d); its traffic goes to %s", decision.region,
                        decision.term, where)
        else:
            log.info("routing: %s failed back (term %d); it takes traffic again", decision.region, decision.term)

    @hookimpl
    def meshd_region_fenced(self, daemon: Any, fenced: bool, reason: str) -> None:
        # The fencing plugin's route filter is registered only while fenced: pick it up (or drop it).
        self._ensure(daemon)
        self._install_filter(daemon)
        self.fenced = reason if fenced else None

    def _log_change(self, daemon: Any, region: str, before: str | None) -> None:
        assert self.engine is not None
        after = self.engine.exclusion(region)
        if after != before:
            if after:
                self._log(daemon).warning("routing: %s takes no traffic (%s)", region, after)
            else:
                self._log(daemon).info("routing: %s takes traffic again", region)

    # ------------------------------------------------------------ APIs

    def answer(self, daemon: Any, body: Any, api_name: str) -> dict[str, Any]:
        """The JSON answer to one request, counted by API and result; never raises.

        Refused (``not_ready``) while the daemon lacks part of its view: a restarted daemon that has
        not read the committed failovers yet would send tenants to a failed-over region.
        """
        try:
            engine = self._ensure(daemon)
            waiting = daemon.not_ready()
            if waiting:
                t = meshd.Translator(daemon.config.daemon.lang)
                reply = {"ok": False, "error": api.NOT_READY, "waiting_for": waiting,
                         "message": t("routing.error.not_ready", region=daemon.region,
                                      reasons="; ".join(t(key) for key in waiting)),
                         "answered_by": daemon.region}
            else:
                reply = api.answer(engine, body, answered_by=daemon.region)
        except Exception as exc:  # a bug must cost one answer, not the caller's timeout
            self._log(daemon).error("route request failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
            reply = {"ok": False, "error": api.INTERNAL_ERROR, "message": f"{type(exc).__name__}: {exc}",
                     "answered_by": daemon.region}
        if self.fenced is not None:
            reply["fenced"] = self.fenced
        self._requests.labels(api_name, "ok" if reply["ok"] else reply["error"]).inc()
        return reply

    async def _on_request(self, daemon: Any, env: Envelope, msg: Message) -> None:
        if not msg.reply:
            self._requests.labels("bus", api.BAD_REQUEST).inc()
            self._log(daemon).debug("route request from %s without a reply subject; dropped", env.sender)
            return
        if env.type != REQUEST_TYPE:
            reply = {"ok": False, "error": api.BAD_REQUEST, "message": f"unknown message type {env.type!r}",
                     "answered_by": daemon.region}
            self._requests.labels("bus", api.BAD_REQUEST).inc()
        else:
            reply = self.answer(daemon, env.body, "bus")
        await daemon.bus.reply(msg, REPLY_TYPE, reply)

    def _http_route(self, daemon: Any, request: Request) -> Response:
        q = {k: v[-1] for k, v in request.query.items() if v}
        body = {"tenant": q.get("tenant"), "from": q.get("from"), "sovereignty": q.get("sovereignty") or None,
                "session": q.get("session") or None}
        reply = self.answer(daemon, body, "http")
        return Response.json(reply, 200 if reply["ok"] else api.HTTP_STATUS.get(reply["error"], 400))

    def _http_explain(self, daemon: Any, request: Request) -> Response:
        q = {k: v[-1] for k, v in request.query.items() if v}
        try:
            doc = self._ensure(daemon).explain(q.get("from") or "", q.get("tenant") or "",
                                               (q.get("sovereignty") or "").upper() or None)
        except RoutingError as exc:
            return Response.json({"ok": False, **exc.to_json()}, api.HTTP_STATUS.get(exc.code, 400))
        return Response.json({"ok": True, **doc})

    @hookimpl
    def meshd_http_routes(self, daemon: Any) -> list[Route]:
        return [Route("GET", "/v1/route", lambda r: self._http_route(daemon, r)),
                Route("GET", "/v1/route/explain", lambda r: self._http_explain(daemon, r))]

    @hookimpl
    def meshd_metrics(self, daemon: Any) -> list[Any]:
        return [_EngineCollector(self)]

    @hookimpl
    def meshd_status(self, daemon: Any) -> dict[str, Any]:
        engine = self._ensure(daemon)
        return {"routing": engine.snapshot()}
