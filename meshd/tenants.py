"""The tenant directory: who each tenant is and where its data may live.

``tenants.yaml`` is a federation file every region reads the same copy of.
A tenant's ``residency`` is a jurisdiction code of the region map (EU, US,
CA, BH, SG): its requests are routed, and its usage stored, only in regions
of that jurisdiction.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from .config import Name, RegionMap, StrictModel


class Tenant(StrictModel):
    residency: Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
    """Jurisdiction code its data must stay in (a region map ``jurisdiction``)."""
    home: Name | None = None
    """Preferred region, when it is healthy and within the residency."""
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] | None = None
    """ISO 3166 country of the customer (billing, tax)."""
    subdivision: Annotated[str, Field(pattern=r"^[A-Z0-9]{1,3}$")] | None = None
    """ISO 3166-2 subdivision within ``country`` (QC, TX, CN) where tax differs inside the country."""
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = None
    plan: str | None = None
    vat_id: str | None = None
    lang: str | None = None


class TenantDirectory(StrictModel):
    tenants: dict[str, Tenant] = Field(default_factory=dict)

    def residency_regions(self, tenant: str, region_map: RegionMap) -> list[str]:
        """The regions whose jurisdiction is the tenant's residency (empty for an unknown tenant)."""
        t = self.tenants.get(tenant)
        if t is None:
            return []
        return [name for name, region in region_map.regions.items() if region.jurisdiction == t.residency]
