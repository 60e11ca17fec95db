"""Tenants: who each tenant is and where its data may live.

A tenant's ``residency`` is a jurisdiction code of the region map (EU, US,
CA, BH, SG): its requests are routed, and its usage stored, only in regions
of that jurisdiction. :class:`Tenant` is one record; where the records come
from (``tenants.yaml`` or the JetStream KV registry) is a
:class:`meshd.tenantdir.TenantDirectory`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .config import Name, RegionMap, StrictModel

Jurisdiction = Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
Status = Literal["provisioning", "active", "suspended", "deleted"]

CUSTOMER_FIELDS = ("country", "subdivision", "vat_id")
"""The :class:`Tenant` fields that are customer data: kept only in the tenant's jurisdiction."""


class Branding(StrictModel):
    """How a partner's tenant presents itself."""

    primary_color: Annotated[str, Field(pattern=r"^#[0-9A-Fa-f]{6}$")]
    company_name: Annotated[str, Field(min_length=1, max_length=100)]
    logo_url: Annotated[str, Field(pattern=r"^https://\S+$", max_length=2048)] | None = None


class Tenant(StrictModel):
    residency: Jurisdiction
    """Jurisdiction code its data must stay in (a region map ``jurisdiction``)."""
    home: Name | None = None
    """Preferred region, when it is healthy and within the residency."""
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] | None = None
    """ISO 3166 country of the customer (billing, tax). Customer data."""
    subdivision: Annotated[str, Field(pattern=r"^[A-Z0-9]{1,3}$")] | None = None
    """ISO 3166-2 subdivision within ``country`` (QC, TX, CN) where tax differs inside the country. Customer data."""
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = None
    plan: str | None = None
    vat_id: str | None = None
    """Customer data."""
    lang: str | None = None
    # Registry fields: all optional so that a hand-written tenants.yaml needs none of them.
    id: str | None = None
    """The tenant id (the key of tenants.yaml, or ``t_...`` made by the registry)."""
    partner: str | None = None
    """The owning partner's id; None for a tenant the operator owns."""
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    status: Status = "active"
    branding: Branding | None = None
    created: float | None = None
    updated: float | None = None
    revision: int = 0
    """The registry revision of this record (0 for tenants.yaml): what ``expected_revision`` compares with."""


class TenantFile(StrictModel):
    """The ``tenants.yaml`` document, as validated when a config names it."""

    tenants: dict[str, Tenant] = Field(default_factory=dict)

    def residency_regions(self, tenant: str, region_map: RegionMap) -> list[str]:
        """The regions whose jurisdiction is the tenant's residency (empty for an unknown tenant)."""
        return residency_regions(self.tenants.get(tenant), region_map)


def residency_regions(tenant: Tenant | None, region_map: RegionMap) -> list[str]:
    if tenant is None:
        return []
    return [name for name, region in region_map.regions.items() if region.jurisdiction == tenant.residency]
