"""One routing answer shape for every surface: the bus service, the local HTTP route and the CLI.

A request is ``{"tenant", "from", "sovereignty"?, "session"?}``; the answer is
``{"ok": true, "region", "endpoint", "latency_ms", ...}`` or ``{"ok": false,
"error": CODE, "message", ...}``. docs/routing.md documents both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .engine import RoutingEngine, RoutingError

BAD_REQUEST = "bad_request"
INTERNAL_ERROR = "internal_error"
NOT_READY = "not_ready"

# HTTP status per error code: bad input is the caller's to fix (400), no
# eligible region is the federation's state right now (503).
HTTP_STATUS = {"bad_request": 400, "unknown_tenant": 400, "unknown_location": 400, "sovereignty_conflict": 400,
               "no_eligible_region": 503, "not_ready": 503, "internal_error": 500}

MAX_TEXT = 256


class BadRequest(RoutingError):
    """A request that is not shaped like one (missing tenant, wrong types)."""

    code = BAD_REQUEST


def parse_request(body: Any) -> tuple[str, Any, str | None, str | None]:
    """(tenant, from, sovereignty, session) from a request body; raise :class:`BadRequest` naming the field."""
    if not isinstance(body, Mapping):
        raise BadRequest("the request body must be an object with tenant and from", field="")
    tenant = body.get("tenant")
    if not isinstance(tenant, str) or not tenant or len(tenant) > MAX_TEXT:
        raise BadRequest("field 'tenant' must be a non-empty string", field="tenant")
    origin = body.get("from")
    if isinstance(origin, (list, tuple)):
        if len(origin) != 2 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in origin):
            raise BadRequest("field 'from' as a list must be [lat, lon] numbers", field="from")
        origin = (float(origin[0]), float(origin[1]))
    elif not isinstance(origin, str) or not origin or len(origin) > MAX_TEXT:
        raise BadRequest("field 'from' must be a location string or [lat, lon]", field="from")
    sovereignty = body.get("sovereignty")
    if sovereignty is not None and (not isinstance(sovereignty, str) or len(sovereignty) > MAX_TEXT):
        raise BadRequest("field 'sovereignty' must be a jurisdiction code such as EU", field="sovereignty")
    session = body.get("session")
    if session is not None and (not isinstance(session, str) or len(session) > MAX_TEXT):
        raise BadRequest("field 'session' must be a string", field="session")
    return tenant, origin, sovereignty.upper() if sovereignty else None, session or None


def answer(engine: RoutingEngine, body: Any, *, answered_by: str, view: str | None = None) -> dict[str, Any]:
    """The JSON answer to one request; never raises for bad input."""
    head = {"answered_by": answered_by, "view": view or ("stale" if engine.view_stale else "live")}
    try:
        tenant, origin, sovereignty, session = parse_request(body)
    except RoutingError as exc:
        return {"ok": False, **exc.to_json(), **head}
    request = {"tenant": tenant, "from": list(origin) if isinstance(origin, tuple) else origin,
               "sovereignty": sovereignty, "session": session}
    try:
        result = engine.route(origin, tenant, sovereignty, session)
    except RoutingError as exc:
        return {"ok": False, **request, **exc.to_json(), **head}
    residency = engine.tenants[tenant].residency if tenant in engine.tenants else sovereignty
    return {"ok": True, **request, "residency": residency, **result.to_json(), **head}
