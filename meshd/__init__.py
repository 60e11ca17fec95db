"""meshd: one daemon per region; the federation heals itself over NATS.

The public API for plugin authors and embedders is re-exported here:
``from meshd import Daemon`` and ``meshd.StrictModel`` work for every name
in ``__all__``. The submodules load on first use (PEP 562): an idle daemon
does not pay for the parts of the API it never touches (tenant directories,
audit checks, traffic drivers...), and ``import meshd`` alone is cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .adjustments import InvoiceAdjustment
    from .alerting import Alert, DeliveryResult, Notification
    from .auditcheck import AuditCheck, CheckResult, Severity
    from .bus import Bus
    from .config import ConfigError, ConfigIssue, DaemonConfig, LoadedConfig, Region, RegionMap, StrictModel
    from .daemon import Daemon
    from .decisions import Decision, Proposal, Veto
    from .deploydriver import DriverError, DriverStats, ServerCounters, TrafficDriver, TrafficStep
    from .durations import Duration, Size
    from .envelope import Envelope, Reason, Rejected
    from .healthstate import HealthCheck, HealthReport, HealthStatus
    from .hookspecs import hookimpl, hookspec
    from .httpapi import HTTPError, Request, Response, Route
    from .i18n import Translator
    from .kms import KMSProvider
    from .members import Member, MemberState
    from .metrics import Metrics
    from .plugins import Hooks
    from .routefilter import Candidate, Location, RouteRequest
    from .service import Service
    from .tenantdir import (
        CustomerData,
        CustomerDataRefused,
        NewTenant,
        ReadOnlyDirectory,
        TenantChange,
        TenantConflict,
        TenantDirectory,
        TenantDirectoryError,
        TenantPage,
        UnknownTenant,
    )
    from .tenants import Branding, Tenant
    from .transport import KeyExists, KeyValueStore, RequestTimeout, RevisionMismatch, Transport, TransportError

_SUBMODULE_OF: dict[str, str] = {
    "InvoiceAdjustment": "adjustments",
    "Alert": "alerting",
    "DeliveryResult": "alerting",
    "Notification": "alerting",
    "AuditCheck": "auditcheck",
    "CheckResult": "auditcheck",
    "Severity": "auditcheck",
    "Bus": "bus",
    "ConfigError": "config",
    "ConfigIssue": "config",
    "DaemonConfig": "config",
    "LoadedConfig": "config",
    "Region": "config",
    "RegionMap": "config",
    "StrictModel": "config",
    "Daemon": "daemon",
    "Decision": "decisions",
    "Proposal": "decisions",
    "Veto": "decisions",
    "DriverError": "deploydriver",
    "DriverStats": "deploydriver",
    "ServerCounters": "deploydriver",
    "TrafficDriver": "deploydriver",
    "TrafficStep": "deploydriver",
    "Duration": "durations",
    "Size": "durations",
    "Envelope": "envelope",
    "Reason": "envelope",
    "Rejected": "envelope",
    "HealthCheck": "healthstate",
    "HealthReport": "healthstate",
    "HealthStatus": "healthstate",
    "hookimpl": "hookspecs",
    "hookspec": "hookspecs",
    "HTTPError": "httpapi",
    "Request": "httpapi",
    "Response": "httpapi",
    "Route": "httpapi",
    "Translator": "i18n",
    "KMSProvider": "kms",
    "Member": "members",
    "MemberState": "members",
    "Metrics": "metrics",
    "Hooks": "plugins",
    "Candidate": "routefilter",
    "Location": "routefilter",
    "RouteRequest": "routefilter",
    "Service": "service",
    "CustomerData": "tenantdir",
    "CustomerDataRefused": "tenantdir",
    "NewTenant": "tenantdir",
    "ReadOnlyDirectory": "tenantdir",
    "TenantChange": "tenantdir",
    "TenantConflict": "tenantdir",
    "TenantDirectory": "tenantdir",
    "TenantDirectoryError": "tenantdir",
    "TenantPage": "tenantdir",
    "UnknownTenant": "tenantdir",
    "Branding": "tenants",
    "Tenant": "tenants",
    "KeyExists": "transport",
    "KeyValueStore": "transport",
    "RequestTimeout": "transport",
    "RevisionMismatch": "transport",
    "Transport": "transport",
    "TransportError": "transport",
}
"""Which submodule defines each re-exported name."""


def __getattr__(name: str) -> Any:
    module = _SUBMODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "Alert", "AuditCheck", "Branding", "Bus", "Candidate", "CheckResult", "ConfigError", "ConfigIssue",
    "CustomerData", "CustomerDataRefused", "Daemon", "DaemonConfig", "Decision", "DeliveryResult", "DriverError",
    "DriverStats", "Duration", "Envelope", "HealthCheck", "HealthReport", "HealthStatus", "hookimpl", "Hooks",
    "hookspec", "HTTPError", "InvoiceAdjustment", "KeyExists", "KeyValueStore", "KMSProvider", "LoadedConfig",
    "Location", "Member", "MemberState", "Metrics", "NewTenant", "Notification", "Proposal", "ReadOnlyDirectory",
    "Reason", "Region", "RegionMap", "Rejected", "Request", "RequestTimeout", "Response", "RevisionMismatch", "Route",
    "RouteRequest", "ServerCounters", "Service", "Severity", "Size", "StrictModel", "Tenant", "TenantChange",
    "TenantConflict", "TenantDirectory", "TenantDirectoryError", "TenantPage", "TrafficDriver", "TrafficStep",
    "Translator", "Transport", "TransportError", "UnknownTenant", "Veto", "__version__",
]
