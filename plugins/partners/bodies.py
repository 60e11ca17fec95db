"""Request bodies checked field by field, and tenants as the API shows them.

Every check raises a :class:`Problem` naming the field, so a partner learns
exactly what to fix; nothing is written before every check passed.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from .problems import Problem

COLOR_RE = re.compile(r"^#[0-9A-Fa-f]{6}$")
HTTPS_RE = re.compile(r"^https://[^\s/?#]+[^\s]*$")
STATUSES = ("provisioning", "active", "suspended", "deleted")
TENANT_FIELDS = ("id", "name", "partner", "plan", "residency", "home", "status", "branding", "created", "updated",
                 "revision")


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def tenant_json(tenant: Any) -> dict[str, Any]:
    branding = tenant.branding
    return {
        "id": tenant.id, "name": tenant.name, "partner": tenant.partner, "plan": tenant.plan,
        "residency": tenant.residency, "home": tenant.home, "status": tenant.status,
        "branding": None if branding is None else {"primary_color": branding.primary_color,
                                                   "company_name": branding.company_name,
                                                   "logo_url": branding.logo_url},
        "created": rfc3339(tenant.created), "updated": rfc3339(tenant.updated), "revision": tenant.revision,
    }


def only(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    for name in body:
        if name not in allowed:
            raise Problem("validation", field=name, reason="unknown_field", allowed=", ".join(allowed) or "-")


def string(body: dict[str, Any], name: str, *, required: bool = True, max_len: int = 100,
           prefix: str = "") -> str | None:
    value = body.get(name)
    where = prefix + name
    if value is None:
        if required:
            raise Problem("validation", field=where, reason="required")
        return None
    if not isinstance(value, str):
        raise Problem("validation", field=where, reason="string")
    if not value.strip() or len(value) > max_len:
        raise Problem("validation", field=where, reason="length", low=1, high=max_len)
    return value


def branding(value: Any, prefix: str = "") -> dict[str, Any]:
    """A branding object as the registry stores it; ``bad_color`` for a colour that is not #RRGGBB."""
    if not isinstance(value, dict):
        raise Problem("validation", field=prefix.rstrip(".") or "body", reason="object")
    only(value, ("primary_color", "company_name", "logo_url"))
    color = value.get("primary_color")
    if not isinstance(color, str) or not COLOR_RE.match(color):
        raise Problem("bad_color", field=prefix + "primary_color", value=str(color)[:20])
    name = string(value, "company_name", prefix=prefix)
    logo = value.get("logo_url")
    if logo is not None and (not isinstance(logo, str) or len(logo) > 2048 or not HTTPS_RE.match(logo)):
        raise Problem("validation", field=prefix + "logo_url", reason="https_url", high=2048)
    return {"primary_color": color.upper(), "company_name": name, "logo_url": logo}


def integer(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Problem("validation", field=name, reason="integer", low=low, high=high)
    return value


def string_list(value: Any, name: str, *, max_items: int = 50, max_len: int = 64) -> list[str]:
    if not isinstance(value, list) or len(value) > max_items or not all(
            isinstance(v, str) and 0 < len(v) <= max_len for v in value):
        raise Problem("validation", field=name, reason="string_list", items=max_items, high=max_len)
    return list(value)
