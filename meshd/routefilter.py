"""What a route filter sees: the request and its candidate regions (the ``meshd_route_filter`` hook).

These types belong to the plugin contract, so they live in the core and are
re-exported from :mod:`meshd`; the routing engine that builds them is the
routing plugin's (``meshd_plugins.routing.engine``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Candidate", "Location", "RouteFilter", "RouteRequest"]


@dataclass(frozen=True, slots=True)
class Location:
    """A resolved client location; ``key`` is what RTT table rows are named by."""

    key: str
    lat: float
    lon: float
    kind: str
    """``region``, ``place`` (routing.locations), ``country``, ``city``, ``macro_region`` or ``coordinates``."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A region a request may go to, as route filters see it."""

    region: str
    jurisdiction: str
    endpoint: str
    latency_ms: float
    latency_source: str
    weight: int
    carbon_intensity: float | None
    degraded: bool


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """The request a route filter is asked about."""

    tenant_id: str
    residency: str
    location: Location
    sovereignty: str | None = None
    session: str | None = None


RouteFilter = Callable[[RouteRequest, tuple[Candidate, ...]], Sequence[Candidate] | None]
