"""The OpenAPI 3.1 document of the partner API (``GET /v1/openapi.json``), written by hand.

It is the contract the SDKs are built and tested against; the tests check
that every route the app serves is in it and that each answer matches.
"""

from __future__ import annotations

from typing import Any

from .problems import STATUS, TYPE_BASE

VERSION = "1.0.0"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problems(*codes: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for code in ("unauthorized", "rate_limited", *codes):
        status = str(STATUS[code])
        entry = out.setdefault(status, {"description": "", "content": {
            "application/problem+json": {"schema": _ref("Problem")}}})
        entry["description"] = ", ".join(filter(None, [entry["description"], code]))
        if code == "rate_limited":
            entry["headers"] = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
    return out


TENANT_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^t_[a-z2-7]{16}$"}}
IF_MATCH = {"name": "If-Match", "in": "header", "required": False,
            "description": 'The tenant revision the change applies to, e.g. "3"; another revision -> 409 conflict',
            "schema": {"type": "string"}}
IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "required": False,
                   "description": "A retried POST with the same key returns the first answer (24 h)",
                   "schema": {"type": "string", "minLength": 1, "maxLength": 255}}

SCHEMAS: dict[str, Any] = {
    "Branding": {"type": "object", "additionalProperties": False, "required": ["primary_color", "company_name"],
                 "properties": {
                     "primary_color": {"type": "string", "pattern": "^#[0-9A-Fa-f]{6}$"},
                     "company_name": {"type": "string", "minLength": 1, "maxLength": 100},
                     "logo_url": {"type": ["string", "null"], "format": "uri", "pattern": "^https://",
                                  "maxLength": 2048}}},
    "Tenant": {"type": "object", "required": ["id", "name", "partner", "plan", "residency", "home", "status",
                                              "branding", "created", "updated", "revision"],
               "properties": {
                   "id": {"type": "string"}, "name": {"type": ["string", "null"]},
                   "partner": {"type": ["string", "null"]}, "plan": {"type": ["string", "null"]},
                   "residency": {"type": "string", "description": "jurisdiction code of the region map"},
                   "home": {"type": ["string", "null"]},
                   "status": {"type": "string", "enum": ["provisioning", "active", "suspended", "deleted"]},
                   "branding": {"oneOf": [_ref("Branding"), {"type": "null"}]},
                   "created": {"type": ["string", "null"], "format": "date-time"},
                   "updated": {"type": ["string", "null"], "format": "date-time"},
                   "revision": {"type": "integer"}}},
    "TenantCreate": {"type": "object", "additionalProperties": False, "required": ["name", "region", "plan"],
                     "properties": {
                         "name": {"type": "string", "minLength": 1, "maxLength": 200},
                         "region": {"type": "string", "description": "home region; its jurisdiction becomes the "
                                                                     "tenant's residency"},
                         "plan": {"type": "string"},
                         "currency": {"type": "string", "pattern": "^[A-Z]{3}$",
                                      "description": "invoice currency (one of the billing matrix's)"},
                         "residency": {"type": "string", "description": "optional check: the region must lie in "
                                                                        "this jurisdiction"},
                         "branding": _ref("Branding")}},
    "TenantPage": {"type": "object", "required": ["items", "next_cursor"], "properties": {
        "items": {"type": "array", "items": _ref("Tenant")}, "next_cursor": {"type": ["string", "null"]}}},
    "PlanChange": {"type": "object", "additionalProperties": False, "required": ["plan"],
                   "properties": {"plan": {"type": "string"}}},
    "LicenseRequest": {"type": "object", "additionalProperties": False, "required": ["tenant", "plan"],
                       "properties": {
                           "tenant": {"type": "string"}, "plan": {"type": "string"},
                           "features": {"type": "array", "items": {"type": "string"}, "maxItems": 50},
                           "expires_in_days": {"type": "integer", "minimum": 1, "maximum": 3650}}},
    "License": {"type": "object", "required": ["token", "expires_at"], "properties": {
        "token": {"type": "string", "description": "EdDSA (Ed25519) JWT; header kid = <region>/<key id>"},
        "expires_at": {"type": "string", "format": "date-time"}}},
    "Metrics": {"type": "object", "required": ["tenants", "usage", "mrr", "reasons"], "properties": {
        "tenants": {"type": "object", "properties": {
            "total": {"type": "integer"},
            "by_status": {"type": "object", "additionalProperties": {"type": "integer"}},
            "by_region": {"type": "object", "additionalProperties": {"type": "integer"}},
            "by_plan": {"type": "object", "additionalProperties": {"type": "integer"}}}},
        "usage": {"type": ["object", "null"], "description": "this month's metered usage of the partner's tenants"},
        "mrr": {"type": ["object", "null"], "description": "monthly recurring revenue from the billing plugin"},
        "reasons": {"type": "object", "additionalProperties": {"type": "string"},
                    "description": "why a field is null"}}},
    "ApiKey": {"type": "object", "required": ["key_id", "partner", "role", "created", "revoked"], "properties": {
        "key_id": {"type": "string"}, "partner": {"type": "string"},
        "role": {"type": "string", "enum": ["admin", "deployer", "read"]},
        "created": {"type": "string", "format": "date-time"},
        "revoked": {"type": ["string", "null"], "format": "date-time"},
        "key": {"type": "string", "description": "the whole key, only in the answer to its creation"}}},
    "ApiKeyList": {"type": "object", "required": ["items"],
                   "properties": {"items": {"type": "array", "items": _ref("ApiKey")}}},
    "KeyCreate": {"type": "object", "additionalProperties": False,
                  "properties": {"role": {"type": "string", "enum": ["admin", "deployer", "read"]}}},
    "Problem": {"type": "object", "required": ["type", "title", "status", "detail"], "properties": {
        "type": {"type": "string", "enum": sorted(TYPE_BASE + c for c in STATUS)},
        "title": {"type": "string", "description": "in the language of Accept-Language (en, fr, es, de, ar)"},
        "status": {"type": "integer"}, "detail": {"type": "string"},
        "field": {"type": "string", "description": "the body field, query parameter or header at fault"}}},
}


def _op(op_id: str, summary: str, ok: str, ok_schema: str | None, problems: tuple[str, ...], *,
        body: str | None = None, params: list[dict[str, Any]] | None = None, role: str = "read") -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": op_id, "summary": summary,
                          "description": f"Needs a key with role {role} or above.",
                          "parameters": params or [],
                          "responses": {ok: _json(_ref(ok_schema), "success") if ok_schema else {"description": "ok"},
                                        **_problems(*problems)}}
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    return op


def document() -> dict[str, Any]:
    bad_body = ("validation", "malformed_json", "unsupported_media_type", "body_too_large")
    write = ("forbidden", "not_found", "conflict", *bad_body)
    paths = {
        "/v1/tenants": {
            "post": _op("createTenant", "Deploy a tenant in a region", "201", "Tenant",
                        ("forbidden", "unknown_region", "region_outside_residency", "region_dead", "unknown_plan",
                         "bad_color", "idempotency_conflict", *bad_body), body="TenantCreate",
                        params=[IDEMPOTENCY_KEY], role="deployer"),
            "get": _op("listTenants", "The partner's tenants, by id, a page at a time", "200", "TenantPage",
                       ("validation",), params=[
                           {"name": "status", "in": "query", "schema": {
                               "type": "string", "enum": ["provisioning", "active", "suspended", "deleted"]}},
                           {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                                      "maximum": 500, "default": 100}},
                           {"name": "cursor", "in": "query", "schema": {"type": "string"}}]),
        },
        "/v1/tenants/{id}": {
            "get": _op("getTenant", "One tenant", "200", "Tenant", ("not_found",), params=[TENANT_ID]),
            "patch": _op("changePlan", "Change a tenant's plan", "200", "Tenant", (*write, "unknown_plan"),
                         body="PlanChange", params=[TENANT_ID, IF_MATCH], role="deployer"),
            "delete": _op("deleteTenant", "Delete a tenant (a tombstone stays, status deleted)", "200", "Tenant",
                          ("forbidden", "not_found", "conflict"), params=[TENANT_ID, IF_MATCH], role="deployer"),
        },
        "/v1/tenants/{id}/suspend": {
            "post": _op("suspendTenant", "Suspend a tenant", "200", "Tenant", write,
                        params=[TENANT_ID, IF_MATCH, IDEMPOTENCY_KEY], role="deployer"),
        },
        "/v1/tenants/{id}/branding": {
            "put": _op("setBranding", "Set a tenant's branding", "200", "Tenant", (*write, "bad_color"),
                       body="Branding", params=[TENANT_ID, IF_MATCH], role="deployer"),
        },
        "/v1/licenses": {
            "post": _op("issueLicense", "Issue a signed license for a tenant", "201", "License",
                        ("forbidden", "not_found", "unknown_plan", "idempotency_conflict", *bad_body),
                        body="LicenseRequest", params=[IDEMPOTENCY_KEY], role="deployer"),
        },
        "/v1/metrics": {
            "get": _op("getMetrics", "Tenants by status, region and plan; usage; MRR", "200", "Metrics", ()),
        },
        "/v1/keys": {
            "get": _op("listKeys", "The partner's API keys (never their secrets)", "200", "ApiKeyList",
                       ("forbidden",), role="admin"),
            "post": _op("createKey", "A new API key for the partner (shown once)", "201", "ApiKey",
                        ("forbidden", *bad_body), body="KeyCreate", params=[IDEMPOTENCY_KEY], role="admin"),
        },
        "/v1/keys/{key_id}": {
            "delete": _op("revokeKey", "Revoke one of the partner's keys (refused everywhere within a second)",
                          "200", "ApiKey", ("forbidden", "not_found"), role="admin",
                          params=[{"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}]),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "meshd partner API", "version": VERSION,
                 "description": "Deploy and manage tenants of a meshd federation as a partner. Every request "
                                "carries `Authorization: Bearer mpk_...` and `Meshd-Partner: <partner id>`."},
        "security": [{"apiKey": [], "partner": []}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "bearerFormat": "mpk_<key id>_<secret>"},
                "partner": {"type": "apiKey", "in": "header", "name": "Meshd-Partner"},
            },
        },
    }
