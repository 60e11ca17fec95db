"""The deploy plugin: canary rollouts region by region, with automatic analysis and rollback.

See docs/deploy.md and docs/rollback.md. The pure parts (the pipeline file,
the analysis, the rollout record) work without a daemon; the plugin class
wires them to the KV bucket, the traffic drivers (``meshd_deploy_driver``),
membership and failover events, the admin HTTP API and the CLI
(``meshd deploy``, ``meshd smoke``).
"""

from __future__ import annotations

from typing import Any

import meshd
from meshd import hookimpl
from meshd.config import ConfigIssue, LoadedConfig
from meshd.deploydriver import TrafficDriver
from meshd.httpapi import HTTPError, Request, Response, Route

from .analysis import Check, judge
from .command import CommandDriver
from .config import DeployConfig, pipeline_named, pipeline_path
from .haproxy import HAProxyDriver, parse_stat
from .pipeline import Pipeline, Plan, check_steps, load_pipeline
from .record import Rollout, verify_chain
from .runtime import SECTION, Runtime, dr_pairs
from .store import Conflict, RolloutStore

__all__ = ["Check", "CommandDriver", "DeployConfig", "DeployPlugin", "HAProxyDriver", "Pipeline", "Plan",
           "Rollout", "RolloutStore", "check_steps", "judge", "load_pipeline", "parse_stat", "verify_chain"]

BUILTIN_DRIVERS: dict[str, Any] = {"haproxy": HAProxyDriver, "command": CommandDriver}
STATUS = {"unknown_service": 400, "unknown_region": 400, "bad_request": 400, "frozen": 409, "running": 409,
          "not_running": 409, "not_paused": 409, "unknown": 404, "busy": 503, "corrupt": 500}


def check_config(config: LoadedConfig, hooks: Any) -> list[ConfigIssue]:
    path = pipeline_path(config)
    if not path.exists():
        if pipeline_named(config):
            return [ConfigIssue(config.path, ("deploy", "pipeline"), f"pipeline file {path} not found",
                                config.source.line_of(("deploy", "pipeline")))]
        return []
    pipeline, issues = load_pipeline(path, config.region_map, dr_pairs(config))
    if pipeline is None:
        return issues
    for service, svc in pipeline.file.services.items():
        for region, driver in svc.drivers.items():
            settings = driver.model_dump()
            kind = settings.pop("kind")
            try:
                built = hooks.call_sync("meshd_deploy_driver", kind=kind, region=region, config=settings)
            except ValueError as exc:  # a facade that raises (tests calling directly) still names the driver
                built, message = None, str(exc)
            else:
                message = f"no plugin provides a deploy driver of kind {kind!r}"
            if built is None:
                keypath = ("services", service, "drivers", region)
                # The facade logs a driver's ValueError; say it here too, where the file is named.
                if kind in BUILTIN_DRIVERS:
                    try:
                        BUILTIN_DRIVERS[kind].build(settings)
                    except ValueError as exc:
                        message = str(exc)
                issues.append(ConfigIssue(path, keypath, message, None, code="pipeline"))
    return issues


class DeployPlugin:
    def __init__(self) -> None:
        self.runtime: Runtime | None = None

    @hookimpl
    def meshd_config_models(self) -> dict[str, type]:
        return {SECTION: DeployConfig}

    @hookimpl
    def meshd_validate_config(self, config: LoadedConfig, hooks: Any) -> list[ConfigIssue]:
        return check_config(config, hooks)

    @hookimpl
    def meshd_federation_files(self) -> list[str]:
        return ["region_pipeline.yaml"]

    @hookimpl
    def meshd_deploy_driver(self, kind: str, region: str, config: dict[str, Any]) -> TrafficDriver | None:
        factory = BUILTIN_DRIVERS.get(kind)
        return factory.build(config) if factory is not None else None

    @hookimpl
    def meshd_cli_commands(self, subparsers: Any, t: Any) -> None:
        from .cli import add_commands

        add_commands(subparsers, t)

    @hookimpl
    async def meshd_startup(self, daemon: meshd.Daemon) -> None:
        self.runtime = Runtime(daemon)
        await self.runtime.start()

    @hookimpl
    def meshd_services(self, daemon: meshd.Daemon) -> list[meshd.Service]:
        if self.runtime is None or self.runtime.pipeline is None:
            return []
        return [meshd.Service("deploy-rollouts", self.runtime.run)]

    @hookimpl
    def meshd_reload(self, daemon: meshd.Daemon, previous: LoadedConfig) -> None:
        if self.runtime is not None and self.runtime.pipeline is not None:
            self.runtime.reload()

    @hookimpl
    def meshd_member_changed(self, daemon: meshd.Daemon, member: meshd.Member) -> None:
        if self.runtime is not None and member.region != daemon.region:
            self.runtime.member_changed(member.region, str(getattr(member.state, "value", member.state)))

    @hookimpl
    def meshd_failover_committed(self, daemon: meshd.Daemon, decision: meshd.Decision) -> None:
        if self.runtime is not None:
            self.runtime.failed_over(decision.region, decision.action)

    @hookimpl
    def meshd_status(self, daemon: meshd.Daemon) -> dict[str, Any]:
        return {SECTION: self.runtime.status() if self.runtime else {"state": "starting"}}

    @hookimpl
    def meshd_http_routes(self, daemon: meshd.Daemon) -> list[Route]:
        return [
            Route("GET", "/v1/deploy", self._status_route),
            Route("GET", "/v1/deploy/history", self._history_route),
            Route("POST", "/v1/deploy/start", self._start_route, admin=True),
            Route("POST", "/v1/deploy/{service}/{action}", self._operator_route, admin=True),
        ]

    async def _status_route(self, request: Request) -> Response:
        service = (request.query.get("service") or [None])[0]
        return await self._answer(lambda rt: _wrap("rollouts", rt.documents(service or None)))

    async def _history_route(self, request: Request) -> Response:
        service = (request.query.get("service") or [None])[0]
        return await self._answer(lambda rt: _wrap("rollouts", rt.history(service or None)))

    async def _start_route(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict):
            raise HTTPError(400, "the body must be a JSON object: {service, version, region | pipeline}")

        async def start(rt: Runtime) -> dict[str, Any]:
            rollout = await rt.start_rollout(str(body.get("service") or ""), str(body.get("version") or ""),
                                             body.get("region") or None, bool(body.get("pipeline")))
            return {"rollout": rollout.to_json()}
        return await self._answer(start)

    async def _operator_route(self, request: Request) -> Response:
        action = request.params["action"]
        if action not in ("promote", "pause", "resume", "abort"):
            raise HTTPError(404, f"no deploy action {action!r} (promote, pause, resume, abort)")

        async def act(rt: Runtime) -> dict[str, Any]:
            return {"rollout": (await rt.operator(request.params["service"], action)).to_json()}
        return await self._answer(act)

    async def _answer(self, call: Any) -> Response:
        if self.runtime is None:
            return Response.json({"error": "the daemon is starting", "code": "not_running"}, 503)
        try:
            return Response.json(await call(self.runtime))
        except Conflict as exc:
            return Response.json({"error": str(exc), "code": exc.code}, STATUS.get(exc.code, 409))


async def _wrap(key: str, awaitable: Any) -> dict[str, Any]:
    return {key: await awaitable}
