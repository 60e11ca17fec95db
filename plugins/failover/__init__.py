"""The failover plugin: quorum votes on a dead region's failover and failback.

See :mod:`meshd_plugins.failover.engine` for the protocol and
``docs/failover.md`` for operators. The plugin adds the ``failover:`` config
section, reads ``dr_config.yaml``, keeps a hash-chained audit log in the
state directory, and adds ``meshd failover``, ``meshd failback`` and
``meshd audit-log verify``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import meshd
from meshd import hookimpl
from meshd.config import ConfigIssue, LoadedConfig
from meshd.httpapi import Request, Response, Route

from . import status
from .config import FailoverConfig, dr_config_path, strict_majority, vote_timing
from .drconfig import load_dr_config
from .engine import FailoverEngine

_STATUS_CODES = {"unknown_region": 400, "bad_reason": 400, "already_failed_over": 409, "not_failed_over": 409,
                 "not_alive": 409, "no_target": 409, "disabled": 503, "isolated": 503, "kv_unavailable": 503}


class FailoverPlugin:
    """One instance per daemon; the engine holds its state."""

    def __init__(self) -> None:
        self.engine: FailoverEngine | None = None

    def _engine(self, daemon: meshd.Daemon) -> FailoverEngine:
        if self.engine is None:
            self.engine = FailoverEngine(daemon)
        return self.engine

    # ------------------------------------------------------------ configuration

    @hookimpl
    def meshd_config_models(self) -> dict[str, type]:
        return {"failover": FailoverConfig}

    @hookimpl
    def meshd_federation_files(self) -> list[str]:
        return ["dr_config.yaml"]

    @hookimpl
    def meshd_validate_config(self, config: LoadedConfig) -> list[ConfigIssue]:
        cfg: FailoverConfig = config.plugin("failover")
        issues: list[ConfigIssue] = []
        configured = len(config.region_map.regions)
        floor = strict_majority(configured)
        if cfg.quorum is not None:
            keypath = ("failover", "quorum")
            if cfg.quorum < floor:
                issues.append(ConfigIssue(config.path, keypath, f"quorum {cfg.quorum} is below a strict majority of "
                                          f"the {configured} configured regions ({floor}): a minority could decide",
                                          config.line_of(keypath)))
            elif cfg.quorum > configured:
                issues.append(ConfigIssue(config.path, keypath, f"quorum {cfg.quorum} is more than the {configured} "
                                          "configured regions: no decision could ever be made",
                                          config.line_of(keypath)))
        # Only a value written down is wrong here: the default of 2 in a one-region federation (a
        # laptop, a test) has nothing to fail over to anyway.
        if "min_requesters" in cfg.manual.model_fields_set and cfg.manual.min_requesters > configured:
            keypath = ("failover", "manual", "min_requesters")
            issues.append(ConfigIssue(config.path, keypath, f"min_requesters {cfg.manual.min_requesters} is more "
                                      f"than the {configured} configured regions: no operator failover of a live "
                                      "region could ever be voted", config.line_of(keypath)))
        rebroadcast, lease = vote_timing(config)
        if lease <= rebroadcast:
            keypath = ("failover", "lease") if cfg.lease is not None else ("failover", "rebroadcast")
            issues.append(ConfigIssue(config.path, keypath, f"lease {lease:g}s is not longer than rebroadcast "
                                      f"{rebroadcast:g}s: every vote would lapse before its voter renews it",
                                      config.line_of(keypath)))
        path = dr_config_path(config)
        if path.is_file():
            issues.extend(load_dr_config(path, config.region_map)[1])
        elif "dr_config" in cfg.model_fields_set:
            keypath = ("failover", "dr_config")
            issues.append(ConfigIssue(config.path, keypath, f"{path}: file not found",
                                      config.line_of(keypath), code="missing_file"))
        return issues

    @hookimpl
    def meshd_cli_commands(self, subparsers: Any, t: Any) -> None:
        from . import cli  # only commands that parse a command line need it, not the daemon
        cli.add_commands(subparsers, t)

    # ------------------------------------------------------------ lifecycle

    @hookimpl
    async def meshd_startup(self, daemon: meshd.Daemon) -> None:
        await self._engine(daemon).start()

    @hookimpl
    def meshd_services(self, daemon: meshd.Daemon) -> list[meshd.Service]:
        engine = self._engine(daemon)
        # The vote loop reports ready only once the applier has applied the decisions read at start.
        return [meshd.Service("failover-apply", engine.applier.run), meshd.Service("failover", engine.run)]

    @hookimpl
    def meshd_reload(self, daemon: meshd.Daemon, previous: LoadedConfig) -> None:
        engine = self._engine(daemon)
        engine.load_dr()
        old, new = previous.plugin("failover"), daemon.plugin_config("failover")
        if old.kv != new.kv:
            engine.log.warning("failover.kv changed; it takes effect after a restart")

    @hookimpl
    def meshd_bus_state(self, daemon: meshd.Daemon, connected: bool) -> None:
        self._engine(daemon).bus_state(connected)

    @hookimpl
    def meshd_member_changed(self, daemon: meshd.Daemon, member: meshd.Member,
                             previous: meshd.Member | None) -> None:
        self._engine(daemon).member_changed(member, previous)

    # ------------------------------------------------------------ observability and operators

    @hookimpl
    def meshd_status(self, daemon: meshd.Daemon) -> dict[str, Any]:
        engine = self._engine(daemon)
        return {"decisions": status.decisions(engine), "failover": status.status(engine)}

    @hookimpl
    def meshd_not_ready(self, daemon: meshd.Daemon) -> list[str]:
        return [] if self._engine(daemon).decisions_known else ["failover.not_ready.decisions"]

    @hookimpl
    def meshd_http_routes(self, daemon: meshd.Daemon) -> Sequence[Route]:
        return [
            Route("GET", "/v1/failover", functools.partial(self._get, daemon)),
            Route("POST", "/v1/failover/{region}", functools.partial(self._request, daemon, "failover"), admin=True),
            Route("POST", "/v1/failback/{region}", functools.partial(self._request, daemon, "failback"), admin=True),
        ]

    def _get(self, daemon: meshd.Daemon, _request: Request) -> Response:
        return Response.json(self.meshd_status(daemon))

    async def _request(self, daemon: meshd.Daemon, action: str, request: Request) -> Response:
        engine = self._engine(daemon)
        region = request.params["region"]
        body = request.json() if request.body else {}
        if not isinstance(body, dict) or not isinstance(body.get("force", False), bool):
            return Response.json({"error": "bad_body", "params": {}}, 400)
        reason, force = body.get("reason"), body.get("force", False)
        problem = engine.request_problem(region, action, reason, force)
        if problem is not None:
            code, params = problem
            return Response.json({"error": code, "params": params}, _STATUS_CODES.get(code, 409))
        return Response.json(await engine.request(region, action, reason, force), 202)
