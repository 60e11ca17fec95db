"""meshd: one daemon per region; the federation heals itself over NATS.

The public API for plugin authors and embedders is re-exported here.
"""

__version__ = "0.1.0"

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
