"""The billing plugin: plans in six currencies, tax by date, invoices and credit notes from metered usage.

See docs/billing.md. The pure parts (money, tax, plans, invoice
computation) are plain modules usable without a daemon; the plugin class
wires them to the config, the usage totals hook, the number bucket, the
admin HTTP API and the CLI (``meshd invoice``).
"""

from __future__ import annotations

from typing import Any

import meshd
from meshd import hookimpl
from meshd.config import ConfigIssue, LoadedConfig
from meshd.httpapi import HTTPError, Request, Response, Route

from .config import BillingConfig
from .runtime import SECTION, Failure, Runtime
from .store import StoreLocked

FEDERATION_FILES = ["billing_matrix.yaml", "tax_rates.yaml", "fx_rates.yaml"]


class BillingPlugin:
    def __init__(self) -> None:
        self.runtime: Runtime | None = None

    @hookimpl
    def meshd_config_models(self) -> dict[str, type]:
        return {SECTION: BillingConfig}

    @hookimpl
    def meshd_validate_config(self, config: LoadedConfig) -> list[ConfigIssue]:
        from .checks import check_config

        return check_config(config, config.plugin(SECTION))

    @hookimpl
    def meshd_federation_files(self) -> list[str]:
        return list(FEDERATION_FILES)

    @hookimpl
    def meshd_cli_commands(self, subparsers: Any, t: Any) -> None:
        from .cli import add_billing_commands, add_commands

        add_commands(subparsers, t)
        add_billing_commands(subparsers, t)

    @hookimpl
    async def meshd_startup(self, daemon: meshd.Daemon) -> None:
        self.runtime = Runtime(daemon)
        await self.runtime.start()

    @hookimpl
    def meshd_reload(self, daemon: meshd.Daemon, previous: LoadedConfig) -> None:
        if self.runtime is not None:
            self.runtime.reload()

    @hookimpl
    def meshd_status(self, daemon: meshd.Daemon) -> dict[str, Any]:
        return {SECTION: self.runtime.status() if self.runtime else {"state": "starting"}}

    @hookimpl
    def meshd_http_routes(self, daemon: meshd.Daemon) -> list[Route]:
        return [
            Route("POST", "/v1/invoices", self._invoice_route, admin=True),
            Route("POST", "/v1/invoices/credit", self._credit_route, admin=True),
            Route("GET", "/v1/billing/tenants", self._tenants_route, admin=True),
            Route("POST", "/v1/billing/audit", self._audit_route, admin=True),
        ]

    async def _invoice_route(self, request: Request) -> Response:
        body = _body(request)
        return await self._answer(lambda rt: rt.invoice(str(body.get("tenant") or ""), str(body.get("period") or "")))

    async def _credit_route(self, request: Request) -> Response:
        body = _body(request)
        return await self._answer(lambda rt: rt.credit(str(body.get("invoice") or ""), str(body.get("reason") or "")))

    async def _tenants_route(self, request: Request) -> Response:
        async def tenants(rt: Runtime) -> dict[str, Any]:
            return {"region": rt.daemon.region, "tenants": rt.billed_here()}
        return await self._answer(tenants)

    async def _audit_route(self, request: Request) -> Response:
        body = _body(request)
        return await self._answer(lambda rt: rt.audit(str(body.get("period") or "")))

    async def _answer(self, call: Any) -> Response:
        if self.runtime is None:
            return Response.json({"error": "the daemon is starting", "code": "not_running"}, 503)
        try:
            return Response.json(await call(self.runtime))
        except Failure as exc:
            return Response.json(exc.body(), exc.status)
        except StoreLocked as exc:  # a sealed document this region cannot open: say which, keep serving
            self.runtime.m_refused.labels("store_locked").inc()
            return Response.json({"error": str(exc), "code": "store_locked"}, 500)


def _body(request: Request) -> dict[str, Any]:
    body = request.json()
    if not isinstance(body, dict):
        raise HTTPError(400, "the body must be a JSON object")
    return body
