"""The partners plugin: the partner HTTP API (tenants, branding, licenses, metrics) and its API keys.

See docs/partners.md. Partners and their keys live in the JetStream KV
bucket ``meshd_partners``, which every region with the plugin enabled
watches; the API itself is a Starlette app served by uvicorn inside the
daemon's event loop, on its own listener (``partners.port``). Operators
manage partners and keys through the daemon's admin API (``meshd
partners``); licenses verify offline (``meshd license verify``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import meshd
from meshd import hookimpl
from meshd.config import ConfigIssue, LoadedConfig
from meshd.httpapi import Route
from meshd.service import Service

from .config import PartnersConfig

if TYPE_CHECKING:
    from .runtime import Runtime

SECTION = "partners"


class PartnersPlugin:
    def __init__(self) -> None:
        self.runtime: Runtime | None = None

    @hookimpl
    def meshd_config_models(self) -> dict[str, type]:
        return {SECTION: PartnersConfig}

    @hookimpl
    def meshd_validate_config(self, config: LoadedConfig) -> list[ConfigIssue]:
        settings: PartnersConfig = config.plugin(SECTION)
        issues = []
        from meshd.config import TenantRegistryConfig

        if settings.enabled and not isinstance(config.daemon.tenants, TenantRegistryConfig):
            where = (SECTION, "enabled")
            issues.append(ConfigIssue(config.path, where, "the partner API writes tenants: it needs the KV tenant "
                                      "registry (tenants: {registry: kv})", config.line_of(where)))
        if settings.enabled and settings.tls is not None:
            for name in ("cert_file", "key_file"):
                path = getattr(settings.tls, name)
                if not path.is_file():
                    where = (SECTION, "tls", name)
                    issues.append(ConfigIssue(config.path, where, f"{path} is not a readable file",
                                              config.line_of(where)))
        return issues

    @hookimpl
    def meshd_cli_commands(self, subparsers: Any, t: Any) -> None:
        from .cli import add_commands

        add_commands(subparsers, t)

    @hookimpl
    async def meshd_startup(self, daemon: meshd.Daemon) -> None:
        if daemon.plugin_config(SECTION).enabled:
            # Starlette, uvicorn and argon2 are imported only by a daemon that serves the API.
            from .runtime import Runtime

            self.runtime = Runtime(daemon)
            await self.runtime.start()

    @hookimpl
    def meshd_services(self, daemon: meshd.Daemon) -> list[Service]:
        rt = self.runtime
        if rt is None:
            return []
        return [Service("partners-keys", rt.watch), Service("partners-api", rt.serve)]

    @hookimpl
    async def meshd_shutdown(self, daemon: meshd.Daemon) -> None:
        if self.runtime is not None:
            await self.runtime.stop()

    @hookimpl
    async def meshd_member_changed(self, daemon: meshd.Daemon, member: Any, previous: Any) -> None:
        if self.runtime is not None:
            self.runtime.members[member.region] = member.state.value

    @hookimpl
    def meshd_status(self, daemon: meshd.Daemon) -> dict[str, Any]:
        return {SECTION: self.runtime.status() if self.runtime else {"state": "disabled"}}

    @hookimpl
    def meshd_http_routes(self, daemon: meshd.Daemon) -> list[Route]:
        from .admin import AdminRoutes

        return AdminRoutes(lambda: self.runtime).routes()


__all__ = ["PartnersPlugin"]
