"""The API's resources as typed, immutable values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 string as an aware datetime (``Z`` accepted); None stays None."""
    if value is None:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


@dataclass(frozen=True)
class Branding:
    primary_color: str
    company_name: str
    logo_url: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Branding:
        return cls(primary_color=data["primary_color"], company_name=data["company_name"],
                   logo_url=data.get("logo_url"))

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"primary_color": self.primary_color, "company_name": self.company_name}
        if self.logo_url is not None:
            body["logo_url"] = self.logo_url
        return body


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str | None
    partner: str | None
    plan: str | None
    residency: str
    home: str | None
    status: str
    branding: Branding | None = None
    created: datetime | None = None
    updated: datetime | None = None
    revision: int = 0

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Tenant:
        branding = data.get("branding")
        return cls(id=data["id"], name=data.get("name"), partner=data.get("partner"), plan=data.get("plan"),
                   residency=data["residency"], home=data.get("home"), status=data["status"],
                   branding=Branding.from_json(branding) if branding else None,
                   created=parse_time(data.get("created")), updated=parse_time(data.get("updated")),
                   revision=int(data.get("revision") or 0))


@dataclass(frozen=True)
class TenantPage:
    items: list[Tenant]
    next_cursor: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TenantPage:
        return cls(items=[Tenant.from_json(item) for item in data["items"]], next_cursor=data.get("next_cursor"))


@dataclass(frozen=True)
class License:
    """A signed license (an EdDSA JWT) and when it expires."""

    token: str
    expires_at: datetime

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> License:
        expires = parse_time(data["expires_at"])
        assert expires is not None
        return cls(token=data["token"], expires_at=expires)


@dataclass(frozen=True)
class ApiKey:
    """One of the partner's API keys; ``key`` (the whole secret key) only in the answer to its creation."""

    key_id: str
    partner: str
    role: str
    created: datetime | None
    revoked: datetime | None = None
    key: str | None = field(default=None, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ApiKey:
        return cls(key_id=data["key_id"], partner=data["partner"], role=data["role"],
                   created=parse_time(data.get("created")), revoked=parse_time(data.get("revoked")),
                   key=data.get("key"))


@dataclass(frozen=True)
class TenantCounts:
    total: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    by_region: dict[str, int] = field(default_factory=dict)
    by_plan: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Metrics:
    """Tenant counts, usage and MRR; ``usage`` and ``mrr`` are None when the federation cannot tell (see ``reasons``).

    Numbers with a fraction (money) are ``Decimal``: the SDK never reads them as floats.
    """

    tenants: TenantCounts
    usage: dict[str, Any] | None
    mrr: dict[str, Any] | None
    reasons: dict[str, str]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Metrics:
        counts = data.get("tenants") or {}
        return cls(tenants=TenantCounts(total=int(counts.get("total") or 0),
                                        by_status=dict(counts.get("by_status") or {}),
                                        by_region=dict(counts.get("by_region") or {}),
                                        by_plan=dict(counts.get("by_plan") or {})),
                   usage=data.get("usage"), mrr=data.get("mrr"), reasons=dict(data.get("reasons") or {}))
