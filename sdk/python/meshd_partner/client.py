"""The blocking client and the asyncio client: the same methods, sending what `core` builds."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, TypeVar

import httpx

from .core import Call, Core, RetryPolicy
from .errors import PartnerConnectionError
from .models import ApiKey, Branding, License, Metrics, Tenant, TenantPage

T = TypeVar("T")
DEFAULT_TIMEOUT = 10.0


def _verify(verify: Any, ca_file: str | None) -> Any:
    """A private CA's certificate (an API behind a self-signed or internal certificate) or httpx's own ``verify``."""
    return ssl.create_default_context(cafile=ca_file) if ca_file else verify


def _unreachable(core: Core, error: httpx.TransportError, attempts: int) -> PartnerConnectionError:
    return PartnerConnectionError(f"{core.base_url} unreachable after {attempts} attempt(s): "
                                  f"{type(error).__name__}: {error}")


class Client:
    """The partner API from blocking code.

    >>> with Client(api_key, "acme", "https://partners.example.com") as api:
    ...     tenant = api.deploy_tenant(name="Bistro", region="eu-west-1", plan="pro")
    """

    def __init__(self, api_key: str, partner_id: str, base_url: str, *, timeout: float = DEFAULT_TIMEOUT,
                 retry: RetryPolicy | None = None, lang: str | None = None, verify: Any = True,
                 ca_file: str | None = None):
        self._core = Core(api_key, partner_id, base_url, lang=lang, retry=retry)
        self._http = httpx.Client(headers=self._core.headers, timeout=timeout, verify=_verify(verify, ca_file))

    def __repr__(self) -> str:
        return f"Client({self._core!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def send(self, call: Call[T]) -> T:
        """Send ``call``, again after a retryable failure (same body, same Idempotency-Key)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(**self._core.request(call))
            except httpx.TransportError as error:
                delay = self._core.retry.after_error(error, call, attempt)
                if delay is None:
                    raise _unreachable(self._core, error, attempt) from error
            else:
                delay = self._core.retry.after_response(response, attempt)
                if delay is None:
                    return self._core.finish(call, response)
            time.sleep(delay)

    def deploy_tenant(self, *, name: str, region: str, plan: str, branding: Branding | Mapping[str, Any] | None = None,
                      currency: str | None = None, residency: str | None = None) -> Tenant:
        """A new tenant homed in ``region`` (its residency is the region's jurisdiction); retried with one Idempotency-Key."""
        return self.send(Core.deploy_tenant(name, region, plan, branding, currency, residency))

    def list_tenants_page(self, *, status: str | None = None, cursor: str | None = None,
                          limit: int | None = None) -> TenantPage:
        return self.send(Core.list_tenants_page(status, cursor, limit))

    def list_tenants(self, status: str | None = None, *, page_size: int | None = None) -> Iterator[Tenant]:
        """Every tenant of the partner (optionally of one status), fetching page after page as it is iterated."""
        cursor: str | None = None
        while True:
            page = self.list_tenants_page(status=status, cursor=cursor, limit=page_size)
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def get_tenant(self, tenant_id: str) -> Tenant:
        return self.send(Core.get_tenant(tenant_id))

    def change_plan(self, tenant_id: str, plan: str, *, expected_revision: int | None = None) -> Tenant:
        return self.send(Core.change_plan(tenant_id, plan, expected_revision))

    def suspend_tenant(self, tenant_id: str) -> Tenant:
        return self.send(Core.suspend_tenant(tenant_id))

    def delete_tenant(self, tenant_id: str) -> Tenant | None:
        return self.send(Core.delete_tenant(tenant_id))

    def issue_license(self, tenant: str, plan: str, features: list[str] | None = None, *,
                      expires_in_days: int | None = None) -> License:
        return self.send(Core.issue_license(tenant, plan, features, expires_in_days))

    def set_branding(self, tenant: str, primary_color: str, company_name: str, logo_url: str | None = None) -> Tenant:
        return self.send(Core.set_branding(tenant, primary_color, company_name, logo_url))

    def get_metrics(self) -> Metrics:
        return self.send(Core.get_metrics())

    def list_keys(self) -> list[ApiKey]:
        return self.send(Core.list_keys())

    def create_key(self, role: str = "read") -> ApiKey:
        """A new key of the partner; its ``key`` is in this answer only (needs an admin key)."""
        return self.send(Core.create_key(role))

    def revoke_key(self, key_id: str) -> ApiKey:
        return self.send(Core.revoke_key(key_id))


class AsyncClient:
    """The partner API from asyncio code: the methods of `Client`, awaited; ``list_tenants`` is an async iterator."""

    def __init__(self, api_key: str, partner_id: str, base_url: str, *, timeout: float = DEFAULT_TIMEOUT,
                 retry: RetryPolicy | None = None, lang: str | None = None, verify: Any = True,
                 ca_file: str | None = None):
        self._core = Core(api_key, partner_id, base_url, lang=lang, retry=retry)
        self._http = httpx.AsyncClient(headers=self._core.headers, timeout=timeout, verify=_verify(verify, ca_file))

    def __repr__(self) -> str:
        return f"AsyncClient({self._core!r})"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(**self._core.request(call))
            except httpx.TransportError as error:
                delay = self._core.retry.after_error(error, call, attempt)
                if delay is None:
                    raise _unreachable(self._core, error, attempt) from error
            else:
                delay = self._core.retry.after_response(response, attempt)
                if delay is None:
                    return self._core.finish(call, response)
            await asyncio.sleep(delay)

    async def deploy_tenant(self, *, name: str, region: str, plan: str,
                            branding: Branding | Mapping[str, Any] | None = None, currency: str | None = None,
                            residency: str | None = None) -> Tenant:
        return await self.send(Core.deploy_tenant(name, region, plan, branding, currency, residency))

    async def list_tenants_page(self, *, status: str | None = None, cursor: str | None = None,
                                limit: int | None = None) -> TenantPage:
        return await self.send(Core.list_tenants_page(status, cursor, limit))

    async def list_tenants(self, status: str | None = None, *, page_size: int | None = None) -> AsyncIterator[Tenant]:
        cursor: str | None = None
        while True:
            page = await self.list_tenants_page(status=status, cursor=cursor, limit=page_size)
            for tenant in page.items:
                yield tenant
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def get_tenant(self, tenant_id: str) -> Tenant:
        return await self.send(Core.get_tenant(tenant_id))

    async def change_plan(self, tenant_id: str, plan: str, *, expected_revision: int | None = None) -> Tenant:
        return await self.send(Core.change_plan(tenant_id, plan, expected_revision))

    async def suspend_tenant(self, tenant_id: str) -> Tenant:
        return await self.send(Core.suspend_tenant(tenant_id))

    async def delete_tenant(self, tenant_id: str) -> Tenant | None:
        return await self.send(Core.delete_tenant(tenant_id))

    async def issue_license(self, tenant: str, plan: str, features: list[str] | None = None, *,
                            expires_in_days: int | None = None) -> License:
        return await self.send(Core.issue_license(tenant, plan, features, expires_in_days))

    async def set_branding(self, tenant: str, primary_color: str, company_name: str,
                           logo_url: str | None = None) -> Tenant:
        return await self.send(Core.set_branding(tenant, primary_color, company_name, logo_url))

    async def get_metrics(self) -> Metrics:
        return await self.send(Core.get_metrics())

    async def list_keys(self) -> list[ApiKey]:
        return await self.send(Core.list_keys())

    async def create_key(self, role: str = "read") -> ApiKey:
        return await self.send(Core.create_key(role))

    async def revoke_key(self, key_id: str) -> ApiKey:
        return await self.send(Core.revoke_key(key_id))
