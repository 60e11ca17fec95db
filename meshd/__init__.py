"""meshd: one daemon per region; the federation heals itself over NATS.

The public API for plugin authors and embedders is re-exported here.
"""

__version__ = "0.1.0"

from .adjustments import InvoiceAdjustment
from .alerting import Alert, DeliveryResult, Notification
from .bus import Bus
from .config import ConfigError, ConfigIssue, DaemonConfig, LoadedConfig, Region, RegionMap, StrictModel
from .daemon import Daemon
from .decisions import Decision, Proposal, Veto
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
from .transport import KeyExists, KeyValueStore, RequestTimeout, RevisionMismatch, Transport, TransportError

__all__ = [
    "Alert", "Bus", "Candidate", "ConfigError", "ConfigIssue", "Daemon", "DaemonConfig", "Decision", "DeliveryResult",
    "Duration", "Envelope", "HTTPError", "HealthCheck", "HealthReport", "HealthStatus", "Hooks", "KMSProvider",
    "InvoiceAdjustment", "KeyExists", "KeyValueStore", "LoadedConfig", "Location", "Member", "MemberState", "Metrics",
    "Notification", "Proposal", "Reason", "Region", "RegionMap", "Rejected", "Request", "RequestTimeout", "Response",
    "RevisionMismatch", "Route", "RouteRequest", "Service", "Size", "StrictModel", "Transport", "TransportError",
    "Translator", "Veto", "__version__", "hookimpl", "hookspec",
]
