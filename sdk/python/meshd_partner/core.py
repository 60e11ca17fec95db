"""Everything about a call that does not depend on blocking or asyncio I/O.

`Client` and `AsyncClient` only send what this module builds and hand back
what it reads: one place for the routes, the headers, the retry decisions and
the parsing, so the two clients cannot drift apart.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from .errors import PartnerAPIError
from .models import ApiKey, Branding, License, Metrics, Tenant, TenantPage

T = TypeVar("T")

__version__ = "0.1.0"
API_KEY = re.compile(r"^mpk_[a-z2-7]{12}_[A-Za-z0-9_-]{32}$")
RETRIED_STATUSES = frozenset({429, 502, 503, 504})


def looks_like_api_key(value: str) -> bool:
    """True for ``mpk_<12 lowercase base32>_<32 urlsafe chars>``, the shape every key has."""
    return bool(API_KEY.match(value))


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API operation, built once and sent as many times as the retries need (same Idempotency-Key)."""

    method: str
    path: str
    parse: Callable[[Any], T]
    params: Mapping[str, Any] | None = None
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # Safe to send again after a timeout, when the server may have acted on the first copy.
    resendable: bool = True


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries on 429/502/503/504 and unreachable servers: exponential backoff with full jitter.

    A ``Retry-After`` from the server is the wait (it knows best); one longer than ``max_delay`` is not
    waited out: the error is raised at once, with its ``retry_after`` for the caller to decide.
    """

    attempts: int = 4
    base_delay: float = 0.2
    max_delay: float = 30.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, base * 2^(attempt-1)], capped, so clients retrying together spread out."""
        return self.rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))

    def after_response(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before sending again, or None to stop here."""
        if response.status_code not in RETRIED_STATUSES or attempt >= self.attempts:
            return None
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is None:
            return self.backoff(attempt)
        return retry_after if retry_after <= self.max_delay else None

    def after_error(self, error: httpx.TransportError, call: Call[Any], attempt: int) -> float | None:
        if attempt >= self.attempts:
            return None
        # A refused connection never reached the server; anything later may have been acted on.
        if isinstance(error, httpx.ConnectError) or call.resendable:
            return self.backoff(attempt)
        return None


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date; None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def read_json(response: httpx.Response) -> Any:
    """The body as JSON, with numbers that have a fraction read as Decimal (money is never a float)."""
    if not response.content:
        return None
    return json.loads(response.content, parse_float=Decimal)


def api_error(response: httpx.Response) -> PartnerAPIError:
    """A PartnerAPIError from an RFC 9457 problem, or from the bare status when the body is not one."""
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    try:
        problem = read_json(response)
    except ValueError:
        problem = None
    if not isinstance(problem, dict) or "title" not in problem:
        return PartnerAPIError(response.status_code, "about:blank", response.reason_phrase or str(response.status_code),
                               retry_after=retry_after)
    return PartnerAPIError(int(problem.get("status") or response.status_code), str(problem.get("type") or "about:blank"),
                           str(problem["title"]), problem.get("detail"), problem.get("field"), retry_after=retry_after)


def _tenant_path(tenant_id: str) -> str:
    if not tenant_id:
        raise ValueError("tenant id is empty")
    return "/v1/tenants/" + quote(tenant_id, safe="")


def _optional_tenant(body: Any) -> Tenant | None:
    return Tenant.from_json(body) if body else None


def _branding_json(branding: Branding | Mapping[str, Any] | None) -> dict[str, Any] | None:
    if branding is None:
        return None
    if isinstance(branding, Branding):
        return branding.to_json()
    return Branding.from_json(branding).to_json()


class Core:
    """Headers, URLs and the calls of every operation; shared by Client and AsyncClient."""

    def __init__(self, api_key: str, partner_id: str, base_url: str, *, lang: str | None = None,
                 retry: RetryPolicy | None = None):
        if not api_key:
            raise ValueError("api_key is empty")
        if not partner_id:
            raise ValueError("partner_id is empty")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, not {base_url!r}")
        self.partner_id = partner_id
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.headers = {"Authorization": f"Bearer {api_key}", "Meshd-Partner": partner_id,
                        "Accept": "application/json, application/problem+json",
                        "User-Agent": f"meshd-partner-python/{__version__}"}
        if lang:
            # The server writes problem titles in this language.
            self.headers["Accept-Language"] = lang

    def __repr__(self) -> str:
        # Never the key: a repr ends up in logs and tracebacks.
        return f"<partner {self.partner_id} at {self.base_url}>"

    def request(self, call: Call[Any]) -> dict[str, Any]:
        """Keyword arguments for httpx's ``request``."""
        args: dict[str, Any] = {"method": call.method, "url": self.base_url + call.path, "headers": dict(call.headers)}
        if call.params:
            args["params"] = {k: v for k, v in call.params.items() if v is not None}
        if call.body is not None:
            args["content"] = json.dumps(call.body, default=str).encode()
            args["headers"]["Content-Type"] = "application/json"
        return args

    @staticmethod
    def finish(call: Call[T], response: httpx.Response) -> T:
        if response.is_success:
            return call.parse(read_json(response))
        raise api_error(response)

    # ------------------------------------------------------------------ operations

    @staticmethod
    def deploy_tenant(name: str, region: str, plan: str, branding: Branding | Mapping[str, Any] | None = None,
                      currency: str | None = None, residency: str | None = None,
                      idempotency_key: str | None = None) -> Call[Tenant]:
        body: dict[str, Any] = {"name": name, "region": region, "plan": plan}
        if branding is not None:
            body["branding"] = _branding_json(branding)
        if currency is not None:
            body["currency"] = currency
        if residency is not None:
            body["residency"] = residency
        # Made once per create and sent with each of its retries: the server answers a repeat with the first result.
        key = idempotency_key or str(uuid.uuid4())
        return Call("POST", "/v1/tenants", Tenant.from_json, body=body, headers={"Idempotency-Key": key})

    @staticmethod
    def list_tenants_page(status: str | None = None, cursor: str | None = None, limit: int | None = None
                          ) -> Call[TenantPage]:
        return Call("GET", "/v1/tenants", TenantPage.from_json,
                    params={"status": status, "cursor": cursor, "limit": limit})

    @staticmethod
    def get_tenant(tenant_id: str) -> Call[Tenant]:
        return Call("GET", _tenant_path(tenant_id), Tenant.from_json)

    @staticmethod
    def change_plan(tenant_id: str, plan: str, expected_revision: int | None = None) -> Call[Tenant]:
        headers = {} if expected_revision is None else {"If-Match": f'"{expected_revision}"'}
        return Call("PATCH", _tenant_path(tenant_id), Tenant.from_json, body={"plan": plan}, headers=headers)

    @staticmethod
    def suspend_tenant(tenant_id: str) -> Call[Tenant]:
        # Suspending a suspended tenant leaves it suspended: safe to send twice.
        return Call("POST", _tenant_path(tenant_id) + "/suspend", Tenant.from_json)

    @staticmethod
    def delete_tenant(tenant_id: str) -> Call[Tenant | None]:
        # A repeated DELETE may answer 404 for the tenant the first one deleted: not resent after a timeout.
        return Call("DELETE", _tenant_path(tenant_id), _optional_tenant, resendable=False)

    @staticmethod
    def issue_license(tenant: str, plan: str, features: list[str] | None = None, expires_in_days: int | None = None,
                      idempotency_key: str | None = None) -> Call[License]:
        body: dict[str, Any] = {"tenant": tenant, "plan": plan}
        if features is not None:
            body["features"] = list(features)
        if expires_in_days is not None:
            body["expires_in_days"] = expires_in_days
        key = idempotency_key or str(uuid.uuid4())
        return Call("POST", "/v1/licenses", License.from_json, body=body, headers={"Idempotency-Key": key})

    @staticmethod
    def set_branding(tenant: str, primary_color: str, company_name: str, logo_url: str | None = None) -> Call[Tenant]:
        body = Branding(primary_color, company_name, logo_url).to_json()
        return Call("PUT", _tenant_path(tenant) + "/branding", Tenant.from_json, body=body)

    @staticmethod
    def get_metrics() -> Call[Metrics]:
        return Call("GET", "/v1/metrics", Metrics.from_json)

    @staticmethod
    def list_keys() -> Call[list[ApiKey]]:
        return Call("GET", "/v1/keys", lambda body: [ApiKey.from_json(item) for item in body["items"]])

    @staticmethod
    def create_key(role: str = "read", idempotency_key: str | None = None) -> Call[ApiKey]:
        key = idempotency_key or str(uuid.uuid4())
        return Call("POST", "/v1/keys", ApiKey.from_json, body={"role": role}, headers={"Idempotency-Key": key})

    @staticmethod
    def revoke_key(key_id: str) -> Call[ApiKey]:
        if not key_id:
            raise ValueError("key id is empty")
        return Call("DELETE", "/v1/keys/" + quote(key_id, safe=""), ApiKey.from_json)


# Every operation of the API (its operationId in /v1/openapi.json) and the SDK method that calls it;
# tests/partners checks this against the served document, and the JavaScript SDK against its own table.
OPERATIONS: dict[str, str] = {
    "createTenant": "deploy_tenant",
    "listTenants": "list_tenants",
    "getTenant": "get_tenant",
    "changePlan": "change_plan",
    "suspendTenant": "suspend_tenant",
    "deleteTenant": "delete_tenant",
    "setBranding": "set_branding",
    "issueLicense": "issue_license",
    "getMetrics": "get_metrics",
    "listKeys": "list_keys",
    "createKey": "create_key",
    "revokeKey": "revoke_key",
}
