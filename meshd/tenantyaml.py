"""The tenant directory read from ``tenants.yaml``: read-only, the same copy in every region.

The file is validated when the config is loaded (errors name file and
line, as before); a change to it takes effect on reload, which builds a new
directory. Every tenant's customer fields are in the file, so every region
has them: a federation that must keep customer data in its jurisdiction
uses the KV registry (:mod:`meshd.tenantkv`) instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .tenantdir import (
    CopyDirectory,
    CustomerData,
    NewTenant,
    ReadOnlyDirectory,
    TenantChange,
)
from .tenants import CUSTOMER_FIELDS, Tenant, TenantFile


class YamlTenantDirectory(CopyDirectory):
    read_only = True

    def __init__(self, file: TenantFile, *, source: Any = None, jurisdiction: str | None = None):
        super().__init__(jurisdiction)
        self.source = source
        """The file it was read from (for messages), if any."""
        for tenant_id, tenant in file.tenants.items():
            self._copy[tenant_id] = tenant if tenant.id == tenant_id else tenant.model_copy(update={"id": tenant_id})

    def _refuse(self) -> ReadOnlyDirectory:
        where = f" ({self.source})" if self.source else ""
        return ReadOnlyDirectory(f"the tenant directory is a read-only file{where}: edit it and reload, "
                                 "or use the KV registry (tenants: {registry: kv})")

    async def create(self, new: NewTenant, *, customer: CustomerData | None = None) -> Tenant:
        raise self._refuse()

    async def update(self, tenant_id: str, changes: Mapping[str, Any], *,
                     expected_revision: int | None = None) -> Tenant:
        raise self._refuse()

    async def delete(self, tenant_id: str, *, expected_revision: int | None = None) -> Tenant:
        raise self._refuse()

    async def customer_data(self, tenant_id: str) -> CustomerData | None:
        tenant = self._known(tenant_id)
        if self.jurisdiction is not None:
            self._check_jurisdiction(tenant_id, tenant.residency)
        values = {f: getattr(tenant, f) for f in CUSTOMER_FIELDS}
        return CustomerData(**values) if any(values.values()) else None

    async def set_customer_data(self, tenant_id: str, data: CustomerData) -> None:
        raise self._refuse()

    def as_file(self) -> TenantFile:
        return TenantFile(tenants=dict(self._copy))

    # The YAML directory never changes after load; _apply stays for tests that build one by hand.
    def _put(self, tenant: Tenant) -> None:
        assert tenant.id is not None
        self._apply(TenantChange("put", tenant.id, tenant, tenant.revision))
