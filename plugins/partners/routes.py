"""The partner API's routes: tenants, branding, licenses, metrics and the partner's own keys.

A tenant of another partner does not exist for the caller: every route
answers ``not_found`` for it, the same answer as for an id never made, so
ids of other partners cannot even be confirmed. Deleted tenants are
tombstones: listed only with ``status=deleted``, ``not_found`` elsewhere.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .app import Answer, Call, audit_append
from .bodies import STATUSES, branding, integer, only, string, string_list, tenant_json
from .problems import Problem

if TYPE_CHECKING:
    from .runtime import Runtime


def _object(call: Call) -> dict[str, Any]:
    if call.body is None:
        raise Problem("validation", field="body", reason="object")
    if not isinstance(call.body, dict):
        raise Problem("validation", field="body", reason="object")
    return call.body


class Routes:
    def __init__(self, rt: Runtime):
        self.rt = rt

    def register(self, api: Any) -> None:
        api.route("POST", "/v1/tenants", "write", self.create_tenant)
        api.route("GET", "/v1/tenants", "read", self.list_tenants)
        api.route("GET", "/v1/tenants/{id}", "read", self.get_tenant)
        api.route("PATCH", "/v1/tenants/{id}", "write", self.change_plan)
        api.route("DELETE", "/v1/tenants/{id}", "write", self.delete_tenant)
        api.route("POST", "/v1/tenants/{id}/suspend", "write", self.suspend_tenant)
        api.route("PUT", "/v1/tenants/{id}/branding", "write", self.set_branding)
        api.route("POST", "/v1/licenses", "write", self.issue_license)
        api.route("GET", "/v1/metrics", "read", self.metrics)
        api.route("GET", "/v1/keys", "keys", self.list_keys)
        api.route("POST", "/v1/keys", "keys", self.create_key)
        api.route("DELETE", "/v1/keys/{key_id}", "keys", self.revoke_key)

    # ------------------------------------------------------------ helpers

    def _own(self, call: Call, tenant_id: str) -> Any:
        tenant = self.rt.directory().get(tenant_id)
        if tenant is None or tenant.partner != call.partner or tenant.status == "deleted":
            raise Problem("not_found", id=tenant_id)
        return tenant

    def _plan(self, value: Any, field: str = "plan") -> str:
        if not isinstance(value, str) or not value:
            raise Problem("validation", field=field, reason="required")
        plans = self.rt.plans()
        if value not in plans:
            raise Problem("unknown_plan", field=field, plan=value[:64], plans=", ".join(sorted(plans)) or "-")
        return value

    def _currency(self, value: Any) -> str | None:
        """The tenant's invoice currency: one of the billing matrix's when billing is configured."""
        if value is None:
            return None
        files = self.rt.billing_files()
        allowed = list(files.matrix.currencies) if files is not None else None
        if not isinstance(value, str) or not re.fullmatch(r"[A-Z]{3}", value) or (allowed and value not in allowed):
            raise Problem("validation", field="currency", reason="one_of" if allowed else "currency",
                          allowed=", ".join(allowed or []))
        return value

    async def _write(self, call: Call, action: str, tenant_id: str, changes: dict[str, Any],
                     expected: int | None = None) -> Any:
        from meshd.tenantdir import InvalidTenant, TenantConflict, UnknownTenant

        try:
            if action == "tenant.delete":
                tenant = await self.rt.writable().delete(tenant_id, expected_revision=expected)
            else:
                tenant = await self.rt.writable().update(tenant_id, changes, expected_revision=expected)
        except TenantConflict as exc:
            raise Problem("conflict", revision=exc.current_revision) from None
        except UnknownTenant:
            raise Problem("not_found", id=tenant_id) from None
        except InvalidTenant as exc:
            raise Problem("validation", field=exc.field, reason="registry", message=str(exc)) from None
        await audit_append(self.rt.audit, action, call, {"tenant": tenant_id, "changes": changes,
                                                         "revision": tenant.revision})
        return tenant

    @staticmethod
    def _if_match(call: Call) -> int | None:
        value = call.request.headers.get("if-match")
        if value is None:
            return None
        try:
            return int(value.strip().removeprefix("W/").strip('"'))
        except ValueError:
            raise Problem("validation", field="If-Match", reason="revision") from None

    # ------------------------------------------------------------ tenants

    async def create_tenant(self, call: Call) -> Answer:
        from meshd.tenantdir import InvalidTenant, NewTenant

        body = _object(call)
        only(body, ("name", "region", "plan", "branding", "residency", "currency"))
        name = string(body, "name", max_len=200)
        region = string(body, "region", max_len=64)
        assert name is not None and region is not None
        regions = self.rt.daemon.regions
        if region not in regions:
            raise Problem("unknown_region", field="region", region=region, regions=", ".join(sorted(regions)))
        jurisdiction = regions[region].jurisdiction
        residency = body.get("residency")
        if residency is not None and residency != jurisdiction:
            raise Problem("region_outside_residency", field="region", region=region, jurisdiction=jurisdiction,
                          residency=str(residency)[:8])
        if not self.rt.alive(region):
            raise Problem("region_dead", field="region", region=region, state=self.rt.member_state(region))
        plan = self._plan(body.get("plan"))
        brand = branding(body["branding"], "branding.") if body.get("branding") is not None else None
        currency = self._currency(body.get("currency"))
        directory = self.rt.writable()
        try:
            tenant = await directory.create(NewTenant(name=name, partner=call.partner, plan=plan,
                                                      residency=jurisdiction, home=region, status="active",
                                                      branding=brand, currency=currency))
        except InvalidTenant as exc:
            raise Problem("validation", field=exc.field, reason="registry", message=str(exc)) from None
        await audit_append(self.rt.audit, "tenant.create", call, {"tenant": tenant.id, "name": name, "plan": plan,
                                                                  "home": region, "residency": jurisdiction})
        return Answer(201, tenant_json(tenant), {"Location": f"/v1/tenants/{tenant.id}"})

    async def list_tenants(self, call: Call) -> Answer:
        from meshd.tenantdir import InvalidTenant

        query = call.request.query_params
        status = query.get("status") or None
        if status is not None and status not in STATUSES:
            raise Problem("validation", field="status", reason="one_of", allowed=", ".join(STATUSES))
        try:
            limit = int(query.get("limit", "100"))
        except ValueError:
            raise Problem("validation", field="limit", reason="integer", low=1, high=500) from None
        integer(limit, "limit", 1, 500)
        try:
            page = self.rt.directory().list(partner=call.partner, status=status, cursor=query.get("cursor") or None,
                                            limit=limit)
        except InvalidTenant as exc:
            raise Problem("validation", field=exc.field or "cursor", reason="registry", message=str(exc)) from None
        return Answer(200, {"items": [tenant_json(t) for t in page.items], "next_cursor": page.next_cursor})

    async def get_tenant(self, call: Call) -> Answer:
        tenant = self._own(call, call.path_param("id"))
        return Answer(200, tenant_json(tenant), {"ETag": f'"{tenant.revision}"'})

    async def change_plan(self, call: Call) -> Answer:
        tenant_id = call.path_param("id")
        self._own(call, tenant_id)
        body = _object(call)
        only(body, ("plan",))
        plan = self._plan(body.get("plan"))
        tenant = await self._write(call, "tenant.plan", tenant_id, {"plan": plan}, self._if_match(call))
        return Answer(200, tenant_json(tenant), {"ETag": f'"{tenant.revision}"'})

    async def suspend_tenant(self, call: Call) -> Answer:
        tenant_id = call.path_param("id")
        self._own(call, tenant_id)
        if call.body is not None:
            only(_object(call), ())
        tenant = await self._write(call, "tenant.suspend", tenant_id, {"status": "suspended"}, self._if_match(call))
        return Answer(200, tenant_json(tenant))

    async def delete_tenant(self, call: Call) -> Answer:
        tenant_id = call.path_param("id")
        self._own(call, tenant_id)
        tenant = await self._write(call, "tenant.delete", tenant_id, {}, self._if_match(call))
        return Answer(200, tenant_json(tenant))

    async def set_branding(self, call: Call) -> Answer:
        tenant_id = call.path_param("id")
        self._own(call, tenant_id)
        brand = branding(_object(call))
        tenant = await self._write(call, "tenant.branding", tenant_id, {"branding": brand}, self._if_match(call))
        return Answer(200, tenant_json(tenant))

    # ------------------------------------------------------------ licenses

    async def issue_license(self, call: Call) -> Answer:
        from . import licenses

        body = _object(call)
        only(body, ("tenant", "plan", "features", "expires_in_days"))
        tenant_id = string(body, "tenant", max_len=64)
        assert tenant_id is not None
        self._own(call, tenant_id)
        plan = self._plan(body.get("plan"))
        features = string_list(body["features"], "features") if body.get("features") is not None else []
        ttl = self.rt.settings.license_ttl
        if body.get("expires_in_days") is not None:
            ttl = integer(body["expires_in_days"], "expires_in_days", 1, 3650) * 86400.0
        d = self.rt.daemon
        token, expires = licenses.issue(self.rt.signing_key, federation=d.federation, region=d.region,
                                        tenant=tenant_id, partner=call.partner, plan=plan, features=features, ttl=ttl)
        await audit_append(self.rt.audit, "license.issue", call, {"tenant": tenant_id, "plan": plan,
                                                                  "features": features, "expires": expires})
        return Answer(201, {"token": token, "expires_at": datetime.fromtimestamp(expires, UTC).isoformat()
                            .replace("+00:00", "Z")})

    # ------------------------------------------------------------ metrics

    async def metrics(self, call: Call) -> Answer:
        page_size = 500
        mine: list[Any] = []
        cursor = None
        directory = self.rt.directory()
        for status in (None, "deleted"):
            cursor = None
            while True:
                page = directory.list(partner=call.partner, status=status, cursor=cursor, limit=page_size)
                mine.extend(page.items)
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
        live = [t for t in mine if t.status != "deleted"]
        reasons: dict[str, str] = {}
        usage = await self._usage(live, reasons)
        mrr = self._mrr(live, reasons)
        return Answer(200, {
            "tenants": {
                "total": len(live),
                "by_status": dict(Counter(t.status for t in mine)),
                "by_region": dict(Counter(t.home or "-" for t in live)),
                "by_plan": dict(Counter(t.plan or "-" for t in live)),
            },
            "usage": usage,
            "mrr": mrr,
            "reasons": reasons,
        })

    async def _usage(self, tenants: list[Any], reasons: dict[str, str]) -> dict[str, Any] | None:
        daemon = self.rt.daemon
        if not daemon.hooks._impls("meshd_usage_totals"):
            reasons["usage"] = "metering is not enabled in this region"
            return None
        period = date.today().strftime("%Y-%m")
        meters: dict[str, Decimal] = {}
        incomplete: set[str] = set()
        for tenant in tenants:
            answer = await daemon.hooks.call("meshd_usage_totals", daemon=daemon, tenant=tenant.id, period=period)
            if answer is None:
                reasons["usage"] = "metering is not enabled in this region"
                return None
            if not isinstance(answer, dict) or "error" in answer:
                if isinstance(answer, dict) and answer.get("code") in ("unknown_tenant", "no_usage"):
                    continue
                reasons["usage"] = f"usage of tenant {tenant.id} cannot be read: " + str(
                    (answer or {}).get("error", "metering did not answer"))
                return None
            if not answer.get("complete", True):
                incomplete.update(answer.get("missing", []))
            for meter, value in (answer.get("meters") or {}).items():
                meters[meter] = meters.get(meter, Decimal(0)) + Decimal(str(value.get("value", "0")))
        return {"period": period, "complete": not incomplete, "missing": sorted(incomplete),
                "meters": {m: str(v) for m, v in sorted(meters.items())}}

    def _mrr(self, tenants: list[Any], reasons: dict[str, str]) -> dict[str, Any] | None:
        files = self.rt.billing_files()
        if files is None:
            reasons["mrr"] = "billing is not configured in this region"
            return None
        from meshd_plugins.billing.reports import mrr

        try:
            report = mrr({t.id: t for t in tenants}, files, date.today(), "USD")
        except Exception as exc:  # an unpriceable tenant: no invented figure
            reasons["mrr"] = f"MRR cannot be computed: {exc}"
            return None
        return report

    # ------------------------------------------------------------ the partner's own keys

    async def list_keys(self, call: Call) -> Answer:
        return Answer(200, {"items": [_key_json(k) for k in self.rt.store.keys_of(call.partner)]})

    async def create_key(self, call: Call) -> Answer:
        from .apikeys import ROLES

        body = _object(call) if call.body is not None else {}
        only(body, ("role",))
        role = body.get("role", "read")
        if role not in ROLES:
            raise Problem("validation", field="role", reason="one_of", allowed=", ".join(ROLES))
        record, secret = await self.rt.store.create_key(call.partner, role)
        await audit_append(self.rt.audit, "key.create", call, {"new_key": record.key_id, "role": role})
        return Answer(201, {**_key_json(record), "key": secret})

    async def revoke_key(self, call: Call) -> Answer:
        from .store import StoreError

        key_id = call.path_param("key_id")
        try:
            record = await self.rt.store.revoke_key(call.partner, key_id)
        except StoreError:
            raise Problem("not_found", id=key_id) from None
        await audit_append(self.rt.audit, "key.revoke", call, {"revoked_key": key_id})
        return Answer(200, _key_json(record))


def _key_json(k: Any) -> dict[str, Any]:
    from .bodies import rfc3339

    return {"key_id": k.key_id, "partner": k.partner, "role": k.role, "created": rfc3339(k.created),
            "revoked": rfc3339(k.revoked)}
