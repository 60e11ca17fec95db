"""The metering plugin: every tenant usage event counted exactly once.

Regional services publish usage events into their region's JetStream stream
(plain JSON on ``meshd.<fed>.usage.<region>``, the SDK in
:mod:`meshd_plugins.metering.sdk`, or ``meshd usage record``); a durable
consumer folds them into the region's SQLite ledger per tenant, meter and
hour, acknowledging only after the commit; ``meshd usage --tenant T --period
P`` unites the totals of every region of the tenant's residency. See
docs/metering.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import meshd
from meshd import hookimpl
from meshd.config import ConfigIssue, LoadedConfig
from meshd.httpapi import Request, Response, Route

from .config import MeteringConfig
from .query import BadPeriod
from .runtime import NotRunning, Runtime, UnknownTenant
from .subjects import QUERY_KIND

SECTION = "metering"
NO_METERS = "no meters configured (add them under metering.meters, then meshd reload)"


class MeteringPlugin:
    """One instance per daemon; its :class:`~.runtime.Runtime` holds the state."""

    def __init__(self) -> None:
        self.runtime: Runtime | None = None
        self.worker = False
        """Set by ``meshd ingest``: this process only ingests its partitions (no queries, no routes)."""

    # ------------------------------------------------------------ config

    @hookimpl
    def meshd_config_models(self) -> dict[str, type]:
        return {SECTION: MeteringConfig}

    @hookimpl
    def meshd_validate_config(self, config: LoadedConfig) -> list[ConfigIssue]:
        settings: MeteringConfig = config.plugin(SECTION)
        if settings.enabled and config.tenants is None:
            keypath = (SECTION, "meters")
            return [ConfigIssue(config.path, keypath, "metering needs the tenant directory to keep usage in each "
                                "tenant's residency: set tenants: (e.g. tenants.yaml)", config.line_of(keypath))]
        return []

    @hookimpl
    def meshd_cli_commands(self, subparsers: Any, t: Any) -> None:
        from .cli import add_commands

        add_commands(subparsers, t)

    # ------------------------------------------------------------ lifecycle

    @hookimpl
    async def meshd_startup(self, daemon: meshd.Daemon) -> None:
        runtime = self.runtime = Runtime(daemon, worker=self.worker)
        if not runtime.settings.enabled:
            runtime.state, runtime.detail = "disabled", NO_METERS
        elif not hasattr(daemon.transport, "nc"):
            runtime.state, runtime.detail = "disabled", "needs a NATS transport with JetStream"
            runtime.log.warning("metering disabled: the daemon's transport has no JetStream")
        if self.worker:
            return  # the region's daemon answers queries, from every shard
        # Every region answers totals queries, even one that meters nothing (its share is then empty).
        await daemon.bus.subscribe(QUERY_KIND, runtime.on_query, target=daemon.region)

    @hookimpl
    def meshd_services(self, daemon: meshd.Daemon) -> list[meshd.Service]:
        runtime = self.runtime
        if runtime is None or runtime.state == "disabled":
            return []
        return self._services(runtime)

    @staticmethod
    def _services(runtime: Runtime) -> list[meshd.Service]:
        return [
            meshd.Service("metering-ingest", runtime.run_ingest),
            meshd.Service("metering-prune", runtime.run_prune),
            meshd.Service("metering-alerts", runtime.run_alerts),
        ]

    @hookimpl
    async def meshd_reload(self, daemon: meshd.Daemon, previous: LoadedConfig) -> None:
        runtime = self.runtime
        if runtime is None:
            return
        runtime.reload()
        if runtime.state == "disabled" and runtime.detail == NO_METERS and runtime.settings.enabled:
            # The first meters: start metering now rather than answer "disabled" until a restart.
            runtime.state, runtime.detail = "starting", ""
            runtime.log.info("metering starts: meters %s added by a reload", ", ".join(runtime.settings.meters))
            await daemon.start_services(SECTION, self._services(runtime))
        elif runtime.state != "disabled" and not runtime.settings.enabled:
            runtime.log.warning("every meter was removed: the stream is still consumed and its events are "
                                "rejected (unknown_meter); restart to stop metering")

    @hookimpl
    async def meshd_shutdown(self, daemon: meshd.Daemon) -> None:
        if self.runtime is not None:
            await self.runtime.close()

    # ------------------------------------------------------------ observability

    @hookimpl
    def meshd_status(self, daemon: meshd.Daemon) -> dict[str, Any]:
        if self.runtime is None:
            return {SECTION: {"state": "starting"}}
        return {SECTION: self.runtime.status()}

    @hookimpl
    def meshd_health_checks(self, daemon: meshd.Daemon) -> Sequence[meshd.HealthCheck]:
        if self.runtime is None or self.runtime.state == "disabled":
            return []
        return [self.runtime.health()]

    @hookimpl
    def meshd_http_routes(self, daemon: meshd.Daemon) -> list[Route]:
        if self.worker:
            return []
        return [
            Route("POST", "/v1/usage/events", self._record_route, admin=True),
            Route("GET", "/v1/usage", self._query_route, admin=True),
        ]

    @hookimpl
    async def meshd_usage_totals(self, daemon: meshd.Daemon, tenant: str, period: str) -> dict[str, Any] | None:
        if self.runtime is None or self.runtime.state == "disabled":
            return None
        try:
            return await self.runtime.query(tenant, period)
        except BadPeriod as exc:
            return {"error": str(exc), "code": "bad_period"}
        except UnknownTenant as exc:
            return {"error": str(exc), "code": "unknown_tenant"}
        except NotRunning as exc:
            return {"error": str(exc), "code": "not_running"}

    def _live(self) -> Runtime:
        if self.runtime is None:
            raise NotRunning("the daemon is starting")
        return self.runtime

    async def _record_route(self, request: Request) -> Response:
        try:
            runtime = self._live()
        except NotRunning as exc:
            return Response.json({"error": str(exc), "code": "not_running"}, 503)
        status, body = await runtime.record(request.body)
        if status == 503:
            body["code"] = "not_running"
        return Response.json(body, status)

    async def _query_route(self, request: Request) -> Response:
        tenant = (request.query.get("tenant") or [""])[0]
        period = (request.query.get("period") or [""])[0]
        try:
            return Response.json(await self._live().query(tenant, period))
        except BadPeriod as exc:
            return Response.json({"error": str(exc), "code": "bad_period"}, 400)
        except UnknownTenant as exc:
            return Response.json({"error": str(exc), "code": "unknown_tenant"}, 400)
        except NotRunning as exc:
            return Response.json({"error": str(exc), "code": "not_running"}, 503)
