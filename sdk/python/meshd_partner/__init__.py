"""Python client for the meshd partner API (``/v1``): deploy, list, change and license tenants."""

from .client import AsyncClient, Client
from .core import OPERATIONS, RetryPolicy, __version__
from .errors import PartnerAPIError, PartnerConnectionError, PartnerError
from .models import ApiKey, Branding, License, Metrics, Tenant, TenantCounts, TenantPage

__all__ = [
    "OPERATIONS", "ApiKey", "AsyncClient", "Branding", "Client", "License", "Metrics", "PartnerAPIError",
    "PartnerConnectionError", "PartnerError", "RetryPolicy", "Tenant", "TenantCounts", "TenantPage", "__version__",
]
