"""The audit plugin: compliance checks run in every region, mapped to SOC 2, ISO 27001, GDPR, PIPEDA, HIPAA.

See docs/audit.md. Each region runs the checks plugins offer through
``meshd_audit_checks`` and answers ``audit.run`` requests over the signed
bus; ``meshd audit`` asks its daemon (``POST /v1/audit``), which asks every
region, merges, and scores the controls of each framework
(``etc/compliance/*.yaml``). A scheduled audit per region raises
``ComplianceControlFailing`` when a control that passed fails.
"""

from __future__ import annotations

from typing import Any

import meshd
from meshd import hookimpl
from meshd.auditcheck import AuditCheck
from meshd.config import ConfigError, ConfigIssue, LoadedConfig
from meshd.httpapi import HTTPError, Request, Response, Route

from .config import AuditConfig
from .runtime import RUN_KIND, SECTION, BadRequest, Runtime


class AuditPlugin:
    def __init__(self) -> None:
        self.runtime: Runtime | None = None

    @hookimpl
    def meshd_config_models(self) -> dict[str, type]:
        return {SECTION: AuditConfig}

    @hookimpl
    def meshd_validate_config(self, config: LoadedConfig) -> list[ConfigIssue]:
        from .frameworks import load_frameworks

        settings = config.plugin(SECTION)
        if settings is None or not settings.enabled:
            return []
        regions = config.region_map.regions
        issues = [ConfigIssue(config.path, where, f"{node}: {region!r} is not a region of the federation "
                              f"(known: {', '.join(sorted(regions))})", config.line_of(where))
                  for node, region in sorted(settings.nats_node_regions.items()) if region not in regions
                  for where in [(SECTION, "nats_node_regions", node)]]
        try:
            load_frameworks(settings.frameworks_dir)
        except ConfigError as exc:
            return issues + list(exc.issues)
        except FileNotFoundError:
            pass  # no shipped mappings installed: the audit says so when asked
        return issues

    @hookimpl
    def meshd_cli_commands(self, subparsers: Any, t: Any) -> None:
        from .cli import add_commands

        add_commands(subparsers, t)

    @hookimpl
    def meshd_audit_checks(self, daemon: meshd.Daemon) -> list[AuditCheck]:
        from .checks import builtin_checks

        return builtin_checks()

    @hookimpl
    async def meshd_startup(self, daemon: meshd.Daemon) -> None:
        runtime = self.runtime = Runtime(daemon)
        await daemon.bus.subscribe(RUN_KIND, runtime.on_request, target=daemon.region)

    @hookimpl
    def meshd_services(self, daemon: meshd.Daemon) -> list[meshd.Service]:
        if self.runtime is None:
            return []
        return [meshd.Service("audit-schedule", self.runtime.run_schedule)]

    @hookimpl
    def meshd_status(self, daemon: meshd.Daemon) -> dict[str, Any]:
        return {SECTION: self.runtime.status() if self.runtime else {"state": "starting"}}

    @hookimpl
    def meshd_http_routes(self, daemon: meshd.Daemon) -> list[Route]:
        return [Route("POST", "/v1/audit", self._audit_route, admin=True)]

    async def _audit_route(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict):
            raise HTTPError(400, "the body must be a JSON object")
        if self.runtime is None:
            return Response.json({"error": "the daemon is starting", "code": "not_running"}, 503)
        frameworks, checks = body.get("frameworks"), body.get("checks")
        for name, value in (("frameworks", frameworks), ("checks", checks)):
            if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                return Response.json({"error": f"{name}: expected a list of strings", "code": "bad_input"}, 400)
        try:
            result = await self.runtime.federate(frameworks or None, checks or None, bool(body.get("evidence")))
        except BadRequest as exc:
            return Response.json({"error": str(exc), "code": "bad_input"}, 400)
        return Response.json(result)
