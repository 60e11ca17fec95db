"""Where to send a tenant's request: the routing engine (pure, no I/O).

``RoutingEngine.route(client_location, tenant_id, sovereignty=None,
session=None)`` returns a :class:`RouteResult` (region, endpoint, estimated
latency and the reason for the choice) or raises a :class:`RoutingError`
saying why no region may take the request. It never falls back to a region
outside the tenant's residency.

The decision, in order:

1. **Residency.** Candidates are the regions whose ``jurisdiction`` is the
   tenant's ``residency`` (tenants.yaml). ``sovereignty``, if given, must be
   that same jurisdiction; for a tenant not in the directory it is the
   jurisdiction to use.
2. **Liveness.** Dead, left, down (the region's own health verdict) and
   failed-over regions are excluded. Suspect or degraded regions are kept
   as a second tier, used only when no healthy candidate is left.
3. **Filters.** ``route_filter`` (the ``meshd_route_filter`` hook in a
   daemon) may remove candidates, never add one.
4. **Choice** within the best tier: a live sticky session stays on its
   region; else the tenant's ``home``; else, when the home or the client's
   nearest region is failed over, the committed target (following a chain of
   failovers, still within the residency); else the lowest-latency region,
   with weighted round-robin among every region whose latency is within
   ``latency_tolerance_ms`` (or ``latency_tolerance_ratio`` of the best) of
   the best, optionally narrowed to the lowest grid carbon intensity.

Latency from a client location to a region is, first match wins: the RTT
this daemon measured to that region when the client location is this very
region (``use_measured_rtt``), an operator's RTT table entry, or an estimate
from the great-circle distance::

    rtt_ms = overhead_ms + 2 * path_inflation * distance_km / fiber_km_per_ms

(light in fiber covers about 200 km per millisecond; real paths are about
1.4 times longer than the great circle; a few milliseconds go to the last
mile and equipment).

Speed: decisions are planned once per (tenant class, client location) and
cached until the federation's state changes, so the common call is two dict
lookups and no allocation. A location never seen before whose latencies are
all estimates (coordinates, most named places) is planned from a per-class
template of everything that does not depend on where the client is (which
regions are eligible, the tier, home, failover targets), rebuilt on the next
cold call after the federation's state changes; only the distances are
computed per location, and route filters' candidates are built on first use.
That plan is the exact one (tests compare it with the general planner on
random coordinates and federation states). Raw coordinates without a
session or filter get no plan at all: their answer is computed from the
template, and a weighted rotation keeps only its position per location. One
engine serves one daemon from one thread.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import reduce
from typing import Any, NamedTuple

from meshd.routefilter import Candidate, Location, RouteFilter, RouteRequest

from .places import CITIES, COUNTRIES, MACRO_REGIONS, macro_region_name

__all__ = [
    "Candidate", "LatencyModel", "Location", "NoEligibleRegion", "RouteRequest", "RouteResult", "RoutingEngine",
    "RoutingError", "RoutingSettings", "SovereigntyConflict", "UnknownLocation", "UnknownTenant",
    "great_circle_km", "resolve_location",
]

# Reasons a region was chosen (RouteResult.reason).
STICKY, HOME, FAILOVER, NEAREST, WEIGHTED, CARBON = "sticky", "home", "failover", "nearest", "weighted", "carbon"
REASONS = (STICKY, HOME, FAILOVER, NEAREST, WEIGHTED, CARBON)

# Why a region is not a candidate (NoEligibleRegion.excluded values, status "excluded").
EXCLUDED_REASONS = ("dead", "left", "down", "failed_over", "unseen", "filtered")

MEASURED, CONFIGURED, ESTIMATED = "measured", "configured", "estimated"

EARTH_RADIUS_KM = 6371.0088


# ---------------------------------------------------------------- errors


class RoutingError(ValueError):
    """No route for this request; ``code`` names the kind for APIs and translations."""

    code = "routing_error"

    def __init__(self, message: str, **details: Any):
        super().__init__(message)
        self.details = details

    def to_json(self) -> dict[str, Any]:
        return {"error": self.code, "message": str(self), **self.details}


class UnknownTenant(RoutingError):
    """The tenant is not in the directory and no ``sovereignty`` says where it may go."""

    code = "unknown_tenant"


class UnknownLocation(RoutingError):
    """The client location is not coordinates, a region, a country code, a city code or a configured place."""

    code = "unknown_location"


class SovereigntyConflict(RoutingError):
    """The requested sovereignty differs from the tenant's residency; the residency is never widened."""

    code = "sovereignty_conflict"


class NoEligibleRegion(RoutingError):
    """Every region within the residency is excluded (or there is none); ``excluded`` says why each is."""

    code = "no_eligible_region"


# ---------------------------------------------------------------- values


class RouteResult(NamedTuple):
    """One routing decision; shared between calls.

    A named tuple rather than a frozen dataclass: as immutable, three times
    cheaper to build (a cold route builds one), and the garbage collector
    stops tracking it, which matters for caches of thousands of plans.
    """

    region: str
    endpoint: str
    latency_ms: float
    reason: str
    """``sticky``, ``home``, ``failover``, ``nearest``, ``weighted`` or ``carbon``."""
    jurisdiction: str
    latency_source: str
    """``measured``, ``configured`` or ``estimated``."""
    degraded: bool = False
    """True when only suspect or degraded regions were left to choose from."""

    def to_json(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "endpoint": self.endpoint,
            "latency_ms": round(self.latency_ms, 3),
            "latency_source": self.latency_source,
            "reason": self.reason,
            "jurisdiction": self.jurisdiction,
            "degraded": self.degraded,
        }


@dataclass(frozen=True)
class LatencyModel:
    """Great-circle distance to estimated RTT; see the module docstring."""

    overhead_ms: float = 2.0
    path_inflation: float = 1.4
    fiber_km_per_ms: float = 200.0

    def rtt_ms(self, distance_km: float) -> float:
        return self.overhead_ms + 2.0 * self.path_inflation * distance_km / self.fiber_km_per_ms


@dataclass(frozen=True)
class RoutingSettings:
    """Tuning of the choice; the plugin builds it from the ``routing`` config section."""

    latency_tolerance_ms: float = 10.0
    latency_tolerance_ratio: float = 0.1
    carbon_aware: bool = False
    carbon_tolerance: float = 0.0
    sticky_ttl: float = 1800.0
    max_sessions: int = 100_000
    weight_by: str = "weight"
    """``weight`` or ``capacity``: which region map field weights the round-robin."""
    use_measured_rtt: bool = False
    assume_unseen_up: bool = True
    """Regions the membership view has not reported yet count as alive."""
    latency_model: LatencyModel = field(default_factory=LatencyModel)
    max_cached_locations: int = 10_000


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance on a spherical Earth (error < 0.5 %, far below what RTT estimates resolve)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


# The cold path's arithmetic, bound once (see RoutingEngine._cold_route).
_radians, _cos, _sin, _sqrt, _asin = math.radians, math.cos, math.sin, math.sqrt, math.asin
_TWO_R = 2 * EARTH_RADIUS_KM
_new_result = tuple.__new__
"""Builds a RouteResult from a tuple of its fields without the named tuple's generated ``__new__`` (a Python
frame: about half the cost of building one)."""

_COORDS = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*[, ]\s*(-?\d+(?:\.\d+)?)\s*$")


def resolve_location(value: Any, regions: Mapping[str, Any] | None = None,
                     places: Mapping[str, tuple[float, float]] | None = None) -> Location:
    """A client location from ``value``; raise :class:`UnknownLocation`.

    Accepted, first match wins: a :class:`Location`; a ``(lat, lon)`` pair; a
    name in ``places`` (the operator's ``routing.locations``); a region name;
    ``"lat,lon"``; a two-letter ISO 3166 country code (its capital); a
    three-letter IATA city code; a continent or macro-region name
    (``europe``, ``north-america``...). Codes and names are case-insensitive.
    """
    if isinstance(value, Location):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2:
        lat, lon = value
        return _coordinates(float(lat), float(lon), value)
    if not isinstance(value, str) or not value.strip():
        raise UnknownLocation(f"client location {value!r} is empty or not text", location=str(value))
    text = value.strip()
    if places and text in places:
        lat, lon = places[text]
        return Location(text, float(lat), float(lon), "place")
    if regions and text in regions:
        c = regions[text].coordinates
        return Location(text, c.lat, c.lon, "region")
    m = _COORDS.match(text)
    if m:
        return _coordinates(float(m.group(1)), float(m.group(2)), text)
    code = text.upper()
    if len(code) == 2 and code in COUNTRIES:
        lat, lon = COUNTRIES[code]
        return Location(code, lat, lon, "country")
    if len(code) == 3 and code in CITIES:
        lat, lon = CITIES[code]
        return Location(code, lat, lon, "city")
    area = macro_region_name(text)
    if area in MACRO_REGIONS:
        lat, lon = MACRO_REGIONS[area]
        return Location(area, lat, lon, "macro_region")
    raise UnknownLocation(
        f"client location {text!r} is not lat,lon, a region, an ISO country code, an IATA city code, "
        f"a continent or macro-region ({', '.join(MACRO_REGIONS)}) or a place from routing.locations",
        location=text)


def _coordinates(lat: float, lon: float, raw: Any) -> Location:
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0) or math.isnan(lat) or math.isnan(lon):
        raise UnknownLocation(f"coordinates {raw!r} out of range (lat -90..90, lon -180..180)", location=str(raw))
    return Location(f"{lat:g},{lon:g}", lat, lon, "coordinates")


# ---------------------------------------------------------------- internal plans


class _Class:
    """Tenants that route alike: same residency, same home."""

    __slots__ = ("residency", "home", "regions", "plans", "template", "turns")

    def __init__(self, residency: str, home: str | None, regions: tuple[str, ...]):
        self.residency, self.home, self.regions = residency, home, regions
        self.plans: dict[Any, _Plan] = {}
        self.template: _Template | None = None
        """The location-independent part of this class's plans (see :meth:`RoutingEngine._template`)."""
        self.turns: dict[str, int] = {}
        """Raw coordinates answered by a weighted rotation without a plan -> the rotation's next position.

        A plan per such location would keep the same integer inside an object
        the garbage collector walks; the rotation itself is the template's
        (the same for every request from there until the federation changes).
        """


class _Template:
    """What a tenant class's plan is, before the client's location is known."""

    __slots__ = ("rows", "eligible", "error", "pool", "pool_idx", "degraded", "fixed_idx", "fixed_reason",
                 "redirect", "weight_by", "tolerance_ms", "tolerance_ratio", "carbon_aware", "carbon_tolerance",
                 "model", "pool_rows", "rtt_terms")

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float, float]] = []
        """Every region of the residency (excluded too): name, latitude in radians, its cosine, longitude."""
        self.eligible: list[tuple[int, str, str, str, int, float | None, bool]] = []
        """Every region that may take traffic: row index, region, jurisdiction, endpoint, weight, carbon, degraded."""
        self.error: tuple[str, dict[str, str]] | None = None
        self.pool: frozenset[str] = frozenset()
        self.pool_idx: list[int] = []
        """Indices into ``eligible`` of the chosen tier."""
        self.degraded = False
        self.fixed_idx: int | None = None
        """Index into ``eligible`` of a region chosen wherever the client is (home, home's failover target, or
        the only region of the tier)."""
        self.fixed_reason = HOME
        self.redirect: dict[str, int] = {}
        """Failed-over region -> index into ``eligible`` of its target in the pool: when it is the nearest."""
        self.pool_rows: tuple[tuple[str, float, float, float, int], ...] = ()
        """The pool's rows (region, latitude in radians, its cosine, longitude, index into ``eligible``)."""
        self.rtt_terms = (0.0, 0.0, 1.0)
        """The latency model's ``overhead_ms``, ``2 * path_inflation`` and ``fiber_km_per_ms``."""


def _estimates(tmpl: _Template, lat: float, lon: float,
               rows: Sequence[tuple[str, float, float, float]] | None = None) -> tuple[float, ...]:
    """Estimated RTTs (ms) from ``lat, lon`` to ``rows`` (default: every region of the template), in order.

    great_circle_km and LatencyModel.rtt_ms inlined, operation for operation
    (the same floats), with the regions' side precomputed.
    """
    model = tmpl.model
    overhead, factor, fiber = model.overhead_ms, 2.0 * model.path_inflation, model.fiber_km_per_ms
    p1 = math.radians(lat)
    c1 = math.cos(p1)
    sin, radians = math.sin, math.radians
    asin, sqrt = math.asin, math.sqrt
    return tuple([overhead + factor * (2 * EARTH_RADIUS_KM * asin(min(1.0, sqrt(
        sin((p2 - p1) / 2) ** 2 + c1 * c2 * sin(radians(rlon - lon) / 2) ** 2)))) / fiber
        for _, p2, c2, rlon in (tmpl.rows if rows is None else rows)])


def _choice(tmpl: _Template, pool: Sequence[tuple[float, str, int]]) -> tuple[list[tuple[float, Any]], str]:
    """The regions a choice by distance picks among, nearest first, as ``(latency, eligible entry)``, and why.

    ``pool`` is the tier as ``(latency, region, index into eligible)``, sorted. The rules of
    :meth:`RoutingEngine._choose` after home and failover: the latency tolerance, weights, carbon.
    """
    eligible = tmpl.eligible
    best = pool[0][0]
    limit = best + max(tmpl.tolerance_ms, best * tmpl.tolerance_ratio)
    near = [(m, eligible[i]) for m, _, i in pool if m <= limit]
    weighted = [p for p in near if p[1][4] > 0] or near[:1]
    reason = NEAREST if len(weighted) == 1 else WEIGHTED
    if tmpl.carbon_aware and len(weighted) > 1:
        known = [p[1][5] for p in weighted if p[1][5] is not None]
        if known:
            floor = min(known) + tmpl.carbon_tolerance
            greener = [p for p in weighted if p[1][5] is not None and p[1][5] <= floor]
            if len(greener) < len(weighted):
                weighted, reason = greener, CARBON
    return weighted, reason


def _rotation(weighted: Sequence[tuple[float, Any]]) -> tuple[int, ...]:
    """The order in which a weighted round-robin visits ``weighted`` (indices into it)."""
    return _wrr_order(tuple([max(1, e[4]) for _, e in weighted]))


def _estimated_choice(tmpl: _Template, ms: Sequence[float]) -> tuple[RouteResult | None, tuple[RouteResult, ...]]:
    """What :meth:`RoutingEngine._choose` decides from the template and every row's latency ``ms``.

    ``(result, ())`` for one region, ``(None, rotation)`` for a weighted round-robin.
    """
    eligible, degraded = tmpl.eligible, tmpl.degraded
    pick = tmpl.fixed_idx
    reason = tmpl.fixed_reason
    if pick is None and tmpl.redirect:
        nearest = min(zip(ms, (row[0] for row in tmpl.rows)))[1]
        pick = tmpl.redirect.get(nearest)
        reason = FAILOVER
    if pick is not None:
        e = eligible[pick]
        return RouteResult(e[1], e[3], ms[e[0]], reason, e[2], ESTIMATED, degraded), ()
    weighted, reason = _choice(tmpl, sorted([(ms[eligible[i][0]], eligible[i][1], i) for i in tmpl.pool_idx]))
    results = [RouteResult(e[1], e[3], m, reason, e[2], ESTIMATED, degraded) for m, e in weighted]
    if len(results) == 1:
        return results[0], ()
    return None, tuple([results[k] for k in _rotation(weighted)])


def _template_plan(plan: _Plan, tmpl: _Template, ms: tuple[float, ...], fixed: RouteResult | None,
                   seq: tuple[RouteResult, ...]) -> _Plan:
    """``plan`` filled from its class's template, every row's latency and the choice made from them."""
    plan.template, plan.latencies = tmpl, ms
    plan.pool, plan.degraded = tmpl.pool, tmpl.degraded
    plan.fixed, plan.seq, plan.n, plan.i = fixed, seq, len(seq), 0
    return plan


class _Plan:
    """The precomputed choice for one tenant class from one client location."""

    __slots__ = ("location", "fixed", "seq", "n", "i", "error", "_candidates", "pool", "sticky", "subplans",
                 "_by_region", "degraded", "template", "latencies")

    def __init__(self, location: Location):
        self.location = location
        self.fixed: RouteResult | None = None
        self.seq: tuple[RouteResult, ...] = ()
        self.n = 0
        self.i = 0
        self.error: tuple[str, dict[str, str]] | None = None
        self._candidates: tuple[Candidate, ...] = ()
        self.pool: frozenset[str] = frozenset()
        """Regions of the chosen tier: a session stays on its region while it is one of these."""
        self.sticky: dict[str, RouteResult] = {}  # (an empty dict is not tracked by the garbage collector)
        self.subplans: dict[tuple[Candidate, ...], _Plan] = {}
        self._by_region: dict[str, Candidate] | None = None
        self.degraded = False
        # A cold plan's template and latencies (row order), until its candidates are first needed. Two
        # slots, not a pair, and a tuple of floats (which the garbage collector stops tracking): a cache
        # of cold plans is mostly these.
        self.template: _Template | None = None
        self.latencies: tuple[float, ...] = ()

    # Most plans never see a filter or a session: the candidates those need are built on first use.

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        """Every eligible candidate (both tiers), nearest first: what filters see."""
        if self.template is not None:
            tmpl, ms = self.template, self.latencies
            cands = [Candidate(name, j, endpoint, ms[k], ESTIMATED, weight, carbon, degraded)
                     for k, name, j, endpoint, weight, carbon, degraded in tmpl.eligible]
            cands.sort(key=lambda c: (c.latency_ms, c.region))
            self._candidates, self.template = tuple(cands), None
        return self._candidates

    @candidates.setter
    def candidates(self, value: tuple[Candidate, ...]) -> None:
        self._candidates, self.template = value, None

    @property
    def by_region(self) -> dict[str, Candidate]:
        if self._by_region is None:
            self._by_region = {c.region: c for c in self.candidates}
        return self._by_region

    @by_region.setter
    def by_region(self, value: dict[str, Candidate]) -> None:
        self._by_region = value


    def sticky_result(self, region: str) -> RouteResult:
        """The result that keeps a session on ``region`` (built on first use: most plans never see a session)."""
        result = self.sticky.get(region)
        if result is None:
            c = self.by_region[region]
            result = self.sticky[region] = RouteResult(c.region, c.endpoint, c.latency_ms, STICKY, c.jurisdiction,
                                                       c.latency_source, self.degraded)
        return result

    def pick(self) -> RouteResult:
        if self.fixed is not None:
            return self.fixed
        i = self.i
        self.i = i + 1 if i + 1 < self.n else 0
        return self.seq[i]


def _wrr_schedule(items: Sequence[Any], weights: Sequence[int], max_len: int = 1000) -> list[Any]:
    """One period of nginx's smooth weighted round-robin: interleaved, exact shares."""
    g = reduce(math.gcd, weights)
    w = [x // g for x in weights]
    total = sum(w)
    if total > max_len:  # keep the period short; shares stay within 1/max_len
        w = [max(1, round(x * max_len / total)) for x in w]
        total = sum(w)
    current = [0] * len(w)
    out = []
    for _ in range(total):
        for k, x in enumerate(w):
            current[k] += x
        best = max(range(len(w)), key=lambda k: current[k])
        current[best] -= total
        out.append(items[best])
    return out


_WRR_ORDERS: dict[tuple[int, ...], tuple[int, ...]] = {}


def _wrr_order(weights: tuple[int, ...]) -> tuple[int, ...]:
    """:func:`_wrr_schedule` of the indices ``0..len(weights)-1``, memoized: few distinct weight sets exist."""
    order = _WRR_ORDERS.get(weights)
    if order is None:
        if len(_WRR_ORDERS) >= 1024:
            _WRR_ORDERS.clear()
        order = _WRR_ORDERS[weights] = tuple(_wrr_schedule(range(len(weights)), weights))
    return order


# ---------------------------------------------------------------- the engine


class RoutingEngine:
    """Routing decisions for one daemon's view of the federation.

    ``regions`` is the region map (name -> :class:`meshd.config.Region`),
    ``tenants`` the tenant directory (a :class:`meshd.tenantdir.TenantDirectory`
    or a name -> Tenant mapping), ``rtt`` an RTT table ``{from: {region: ms}}``
    whose rows are named like client locations, ``places`` extra named
    locations, ``local_region`` the region this engine runs in (for measured
    RTTs). Feed it the federation's state with :meth:`set_member`,
    :meth:`set_health` and :meth:`apply_decision`.
    """

    def __init__(self, regions: Mapping[str, Any], tenants: Any = None, *,
                 settings: RoutingSettings | None = None, rtt: Mapping[str, Mapping[str, float]] | None = None,
                 places: Mapping[str, tuple[float, float]] | None = None, local_region: str | None = None,
                 route_filter: RouteFilter | None = None, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self.route_filter = route_filter
        self.local_region = local_region
        # Dynamic state, kept across reconfigure().
        self._state: dict[str, str] = {}
        self._health: dict[str, str] = {}
        self._measured: dict[str, float] = {}
        self._failed_over: dict[str, tuple[str | None, int]] = {}
        self._decision_keys: dict[str, tuple[int, int]] = {}
        self._sessions: dict[tuple[str, str], list[Any]] = {}
        self.view_stale = False
        self.decisions: dict[str, int] = {}
        self.no_eligible: dict[str, int] = {}
        self.version = 0
        self.reconfigure(regions, tenants, settings=settings, rtt=rtt, places=places)

    # ------------------------------------------------------------ configuration

    def reconfigure(self, regions: Mapping[str, Any], tenants: Any = None, *, settings: RoutingSettings | None = None,
                    rtt: Mapping[str, Mapping[str, float]] | None = None,
                    places: Mapping[str, tuple[float, float]] | None = None) -> None:
        """Replace the static inputs (region map, tenants, settings, RTT table); live state is kept."""
        self.regions = dict(regions)
        self.settings = settings or RoutingSettings()
        self.rtt = {str(k): {str(r): float(ms) for r, ms in row.items()} for k, row in (rtt or {}).items()}
        self.places = {str(k): (float(v[0]), float(v[1])) for k, v in (places or {}).items()}
        if tenants is not None and hasattr(tenants, "tenants"):
            tenants = tenants.tenants
        self.tenants = dict(tenants or {})
        by_jurisdiction: dict[str, list[str]] = {}
        for name, region in self.regions.items():
            by_jurisdiction.setdefault(region.jurisdiction, []).append(name)
        self._jurisdictions = {j: tuple(sorted(names)) for j, names in by_jurisdiction.items()}
        self._classes: dict[tuple[str, str | None], _Class] = {}
        self._by_tenant: dict[str, _Class] = {}
        for tenant_id, tenant in self.tenants.items():
            home = tenant.home if tenant.home in self.regions else None
            self._by_tenant[tenant_id] = self._class(tenant.residency, home)
        for name in list(self.decisions):
            if name not in self.regions:
                del self.decisions[name]
        for name in self.regions:
            self.decisions.setdefault(name, 0)
        self._locations: dict[Any, Location] = {}
        self._invalidate()

    def set_tenant(self, tenant_id: str, tenant: Any | None) -> None:
        """One tenant added, changed or (None) removed, as the tenant registry reports it at run time.

        Cheaper than :meth:`reconfigure`: plans belong to (residency, home) classes, not tenants,
        so the others' cached plans stay valid.
        """
        if tenant is None:
            self.tenants.pop(tenant_id, None)
            self._by_tenant.pop(tenant_id, None)
            return
        self.tenants[tenant_id] = tenant
        home = tenant.home if tenant.home in self.regions else None
        self._by_tenant[tenant_id] = self._class(tenant.residency, home)

    def _class(self, residency: str, home: str | None) -> _Class:
        key = (residency, home)
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = _Class(residency, home, self._jurisdictions.get(residency, ()))
        return cls

    def _invalidate(self) -> None:
        self.version += 1
        for cls in self._classes.values():
            cls.plans.clear()
            cls.turns.clear()
            cls.template = None

    # ------------------------------------------------------------ federation state

    def set_member(self, region: str, state: str, health: str | None = None, rtt_ms: float | None = None) -> bool:
        """A region's membership state (alive, suspect, dead, left, isolated) and reported health.

        ``isolated`` about this engine's own region means the view is stale:
        the last known states are kept. Returns whether routing changed.
        """
        state = getattr(state, "value", state)
        if region not in self.regions:
            return False
        if rtt_ms is not None and rtt_ms >= 0:
            changed_rtt = self.settings.use_measured_rtt and self._measured.get(region) != rtt_ms
            self._measured[region] = float(rtt_ms)
        else:
            changed_rtt = False
        if region == self.local_region:
            self.view_stale = state == "isolated"
            state = "alive"  # this daemon runs: its own region is not dead by its own verdict
        elif state == "isolated":
            state = "suspect"
        changed = self._state.get(region) != state
        self._state[region] = state
        if health is not None:
            changed |= self._set_health(region, health)
        if changed or changed_rtt:
            self._invalidate()
        return changed or changed_rtt

    def set_health(self, region: str, health: str | None) -> bool:
        """A region's own health verdict: healthy, degraded or down (None forgets it)."""
        if region not in self.regions:
            return False
        changed = self._set_health(region, health)
        if changed:
            self._invalidate()
        return changed

    def _set_health(self, region: str, health: Any) -> bool:
        health = getattr(health, "value", health)
        if self._health.get(region) == health:
            return False
        if health is None:
            self._health.pop(region, None)
        else:
            self._health[region] = str(health)
        return True

    def apply_decision(self, decision: Any) -> bool:
        """Apply a committed failover or failback (:class:`meshd.decisions.Decision` or its JSON).

        Decisions may arrive in any order and more than once: the latest
        (term, failback-after-failover) per region wins. Returns whether
        routing changed.
        """
        get = decision.get if isinstance(decision, Mapping) else (lambda k: getattr(decision, k))
        region, term, action, target = get("region"), int(get("term")), get("action"), get("target")
        if region not in self.regions or action not in ("failover", "failback"):
            return False
        key = (term, 1 if action == "failback" else 0)
        last = self._decision_keys.get(region)
        if last is not None and key <= last:
            return False
        self._decision_keys[region] = key
        if action == "failover":
            self._failed_over[region] = (target if target in self.regions else None, term)
        else:
            self._failed_over.pop(region, None)
        self._invalidate()
        return True

    @property
    def failed_over(self) -> dict[str, dict[str, Any]]:
        """``{region: {"target", "term"}}`` for every region currently failed over."""
        return {r: {"target": t, "term": term} for r, (t, term) in sorted(self._failed_over.items())}

    def exclusion(self, region: str) -> str | None:
        """Why ``region`` takes no traffic now (``dead``, ``left``, ``down``, ``failed_over``, ``unseen``), or None."""
        if region in self._failed_over:
            return "failed_over"
        state = self._state.get(region)
        if state in ("dead", "left"):
            return state
        if state is None and not self.settings.assume_unseen_up:
            return "unseen"
        if self._health.get(region) == "down":
            return "down"
        return None

    def excluded(self) -> dict[str, str]:
        """Every region that takes no traffic now, with the reason."""
        out = {}
        for name in sorted(self.regions):
            why = self.exclusion(name)
            if why:
                out[name] = why
        return out

    def _degraded(self, region: str) -> bool:
        return self._state.get(region) == "suspect" or self._health.get(region) == "degraded"

    # ------------------------------------------------------------ routing

    def resolve(self, client_location: Any) -> Location:
        """The :class:`Location` a client location names; raise :class:`UnknownLocation`."""
        try:
            loc = self._locations.get(client_location)
        except TypeError:  # unhashable (a list of coordinates)
            return resolve_location(client_location, self.regions, self.places)
        if loc is None:
            loc = resolve_location(client_location, self.regions, self.places)
            if loc.kind == "coordinates":
                return loc  # parsing is cheap; caching every coordinate ever seen is not
            if len(self._locations) >= self.settings.max_cached_locations:
                self._locations.clear()
            self._locations[client_location] = loc
        return loc

    def latency(self, location: Location, region: str) -> tuple[float, str]:
        """Estimated RTT in ms from ``location`` to ``region``, and where it came from."""
        if (self.settings.use_measured_rtt and location.key == self.local_region
                and region in self._measured and region != self.local_region):
            return self._measured[region], MEASURED
        row = self.rtt.get(location.key)
        if row is not None and region in row:
            return row[region], CONFIGURED
        if location.kind == "region":
            back = self.rtt.get(region)
            if back is not None and location.key in back:
                return back[location.key], CONFIGURED
        r = self.regions[region].coordinates
        km = great_circle_km(location.lat, location.lon, r.lat, r.lon)
        return self.settings.latency_model.rtt_ms(km), ESTIMATED

    def route(self, client_location: Any, tenant_id: str, sovereignty: str | None = None,
              session: str | None = None) -> RouteResult:
        """The region for a request of ``tenant_id`` from ``client_location``.

        ``client_location`` is anything :func:`resolve_location` accepts.
        ``sovereignty`` (a jurisdiction code) must match the tenant's
        residency; it is required for a tenant not in the directory.
        ``session`` makes the choice sticky for ``sticky_ttl`` seconds while
        the region stays healthy. Raises :class:`UnknownTenant`,
        :class:`UnknownLocation`, :class:`SovereigntyConflict` or
        :class:`NoEligibleRegion`; never returns a region outside the
        residency, dead, left, down or failed over.
        """
        cls = self._by_tenant.get(tenant_id)
        if cls is None or (sovereignty is not None and sovereignty != cls.residency):
            cls = self._unusual_class(tenant_id, sovereignty)
        try:
            plan = cls.plans.get(client_location)
        except TypeError:  # a [lat, lon] list: the same location as the tuple
            client_location = tuple(client_location)
            plan = cls.plans.get(client_location)
        if plan is None:
            if session is None and self.route_filter is None and type(client_location) is str:
                # Coordinates never seen before: most are answered without building (or caching) a plan.
                result = self._cold_route(cls, client_location)
                if result is not None:
                    self.decisions[result.region] += 1
                    return result
            plan = self._plan(cls, client_location)
        if self.route_filter is not None:
            plan = self._filtered(cls, plan, tenant_id, sovereignty, session)
        if plan.error is not None:
            self.no_eligible[cls.residency] = self.no_eligible.get(cls.residency, 0) + 1
            detail, excluded = plan.error
            raise NoEligibleRegion(detail, residency=cls.residency, tenant=tenant_id, excluded=dict(excluded))
        if session is None:
            result = plan.pick()
        else:
            result = self._sticky(plan, tenant_id, session)
        self.decisions[result.region] += 1
        return result

    def _unusual_class(self, tenant_id: str, sovereignty: str | None) -> _Class:
        cls = self._by_tenant.get(tenant_id)
        if cls is not None:
            raise SovereigntyConflict(
                f"tenant {tenant_id!r} must stay in {cls.residency}; sovereignty {sovereignty!r} cannot widen or "
                "move its residency", tenant=tenant_id, residency=cls.residency, sovereignty=sovereignty)
        if sovereignty is None:
            raise UnknownTenant(f"tenant {tenant_id!r} is not in the tenant directory; pass a sovereignty "
                                "(jurisdiction code) to route it", tenant=tenant_id)
        return self._class(sovereignty, None)

    def _plan(self, cls: _Class, client_location: Any) -> _Plan:
        location = self.resolve(client_location)
        if location.kind != "region" and location.key not in self.rtt and not (
                self.settings.use_measured_rtt and location.key == self.local_region):
            plan = self._estimated_plan(cls, location)  # every latency is an estimate from distance
            if plan.n == 0 and location.kind == "coordinates" and self.route_filter is None:
                # Raw coordinates rarely repeat, and a plan without a rotation or filter subplans has no
                # state to keep: caching it would only grow the heap the garbage collector walks.
                return plan
        else:
            plan = self._exact_plan(cls, location)
        if plan.n and cls.turns and type(client_location) is str:
            # The cold path turned this location's rotation without a plan: the plan goes on from there.
            i = cls.turns.pop(client_location, None)
            if i is not None:
                plan.i = i % plan.n
        self._keep(cls, client_location, plan)
        return plan

    def _keep(self, cls: _Class, client_location: Any, plan: _Plan) -> None:
        if len(cls.plans) >= self.settings.max_cached_locations:
            cls.plans.clear()
        cls.plans[client_location] = plan

    def _exact_plan(self, cls: _Class, location: Location) -> _Plan:
        """The plan of ``location``, from scratch: any latency source."""
        plan = _Plan(location)
        candidates = []
        excluded: dict[str, str] = {}
        nearest_raw: tuple[float, str] | None = None
        for name in cls.regions:
            ms, source = self.latency(location, name)
            if nearest_raw is None or (ms, name) < nearest_raw:
                nearest_raw = (ms, name)
            why = self.exclusion(name)
            if why:
                excluded[name] = why
                continue
            r = self.regions[name]
            weight = r.capacity if self.settings.weight_by == "capacity" else r.weight
            candidates.append(Candidate(name, r.jurisdiction, r.endpoint, ms, source, weight, r.carbon_intensity,
                                        self._degraded(name)))
        candidates.sort(key=lambda c: (c.latency_ms, c.region))
        plan.candidates = tuple(candidates)
        self._choose(cls, plan, plan.candidates, excluded, nearest_raw[1] if nearest_raw else None)
        return plan

    def _template(self, cls: _Class) -> _Template:
        """What :meth:`_choose` decides for ``cls`` before knowing the location (same rules, same order)."""
        tmpl = _Template()
        st = self.settings
        tmpl.tolerance_ms, tmpl.tolerance_ratio = st.latency_tolerance_ms, st.latency_tolerance_ratio
        tmpl.carbon_aware, tmpl.carbon_tolerance, tmpl.model = st.carbon_aware, st.carbon_tolerance, st.latency_model
        model = st.latency_model
        tmpl.rtt_terms = (model.overhead_ms, 2.0 * model.path_inflation, model.fiber_km_per_ms)
        excluded: dict[str, str] = {}
        for k, name in enumerate(cls.regions):
            r = self.regions[name]
            p2 = math.radians(r.coordinates.lat)
            tmpl.rows.append((name, p2, math.cos(p2), r.coordinates.lon))
            why = self.exclusion(name)
            if why:
                excluded[name] = why
                continue
            weight = r.capacity if st.weight_by == "capacity" else r.weight
            tmpl.eligible.append((k, name, r.jurisdiction, r.endpoint, weight, r.carbon_intensity,
                                  self._degraded(name)))
        if not tmpl.eligible:
            probe = _Plan(Location("", 0.0, 0.0, "coordinates"))
            self._choose(cls, probe, (), excluded, None)
            tmpl.error = probe.error
            return tmpl
        healthy = [i for i, e in enumerate(tmpl.eligible) if not e[6]]
        tmpl.pool_idx = healthy or list(range(len(tmpl.eligible)))
        tmpl.degraded = not healthy
        tmpl.pool = frozenset(tmpl.eligible[i][1] for i in tmpl.pool_idx)
        tmpl.pool_rows = tuple(tmpl.rows[tmpl.eligible[i][0]] + (i,) for i in tmpl.pool_idx)
        in_pool = {tmpl.eligible[i][1]: i for i in tmpl.pool_idx}
        if cls.home is not None and cls.home in in_pool:
            tmpl.fixed_idx = in_pool[cls.home]
            return tmpl
        if cls.home is not None and cls.home in self._failed_over:
            target = self._follow(cls.home, cls.residency)
            if target is not None and target in in_pool:
                tmpl.fixed_idx, tmpl.fixed_reason = in_pool[target], FAILOVER
                return tmpl
        for name in cls.regions:  # the nearest region, if failed over, sends its traffic to its target
            if name in self._failed_over:
                target = self._follow(name, cls.residency)
                if target is not None and target in in_pool:
                    tmpl.redirect[name] = in_pool[target]
        if not tmpl.redirect and len(tmpl.pool_idx) == 1:
            tmpl.fixed_idx, tmpl.fixed_reason = tmpl.pool_idx[0], NEAREST  # alone in its tier: nearest from anywhere
        return tmpl

    def _estimated_plan(self, cls: _Class, location: Location) -> _Plan:
        """:meth:`_exact_plan` for a location whose every latency is estimated, from the class's template."""
        tmpl = cls.template
        if tmpl is None:
            tmpl = cls.template = self._template(cls)
        plan = _Plan(location)
        if tmpl.error is not None:
            plan.error, plan._by_region = tmpl.error, {}
            return plan
        ms = _estimates(tmpl, location.lat, location.lon)
        return _template_plan(plan, tmpl, ms, *_estimated_choice(tmpl, ms))

    def _cold_route(self, cls: _Class, text: str) -> RouteResult | None:
        """The route from ``"lat,lon"`` never seen before, without a plan; None where a plan is needed.

        What :meth:`_estimated_plan` would pick, minus what only a kept plan
        uses (a Location, every candidate): a region chosen wherever the
        client is (home, a failover target) costs one distance, a choice
        among the tier one distance per region of the tier, and a weighted
        rotation keeps its position per location in ``cls.turns``. None (the
        caller plans) for anything else than plain coordinates estimated
        from distance, or an error to raise.
        """
        m = _COORDS.match(text)
        if m is None:
            return None
        la, lo = m.groups()
        lat, lon = float(la), float(lo)
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            return None
        if text in self.regions or (self.places and text.strip() in self.places):
            return None  # a region's or an operator's place name, however it is spelled, wins over coordinates
        if self.rtt or self.settings.use_measured_rtt:
            key = f"{lat:g},{lon:g}"
            if key in self.rtt or key == self.local_region:
                return None
        tmpl = cls.template
        if tmpl is None:
            tmpl = cls.template = self._template(cls)
        if tmpl.error is not None:
            return None
        if tmpl.redirect:  # the nearest of every region (excluded ones too) decides: the general choice
            fixed, seq = _estimated_choice(tmpl, _estimates(tmpl, lat, lon))
            return fixed if fixed is not None else seq[self._turn(cls, text, len(seq))]
        # great_circle_km and LatencyModel.rtt_ms inlined as in _estimates, operation for operation (the same
        # floats): a call per distance is a good part of a cold route's cost.
        overhead, factor, fiber = tmpl.rtt_terms
        p1 = _radians(lat)
        c1 = _cos(p1)
        k = tmpl.fixed_idx
        if k is not None:
            e = tmpl.eligible[k]
            _, p2, c2, rlon = tmpl.rows[e[0]]
            s = _sqrt(_sin((p2 - p1) / 2) ** 2 + c1 * c2 * _sin(_radians(rlon - lon) / 2) ** 2)
            ms = overhead + factor * (_TWO_R * _asin(s if s < 1.0 else 1.0)) / fiber
            return _new_result(RouteResult, (e[1], e[3], ms, tmpl.fixed_reason, e[2], ESTIMATED, tmpl.degraded))
        pool = []
        for name, p2, c2, rlon, i in tmpl.pool_rows:
            s = _sqrt(_sin((p2 - p1) / 2) ** 2 + c1 * c2 * _sin(_radians(rlon - lon) / 2) ** 2)
            pool.append((overhead + factor * (_TWO_R * _asin(s if s < 1.0 else 1.0)) / fiber, name, i))
        pool.sort()
        best = pool[0][0]
        if len(pool) == 1 or pool[1][0] > best + max(tmpl.tolerance_ms, best * tmpl.tolerance_ratio):
            e = tmpl.eligible[pool[0][2]]  # one region nearer than the others by more than the tolerance
            return _new_result(RouteResult, (e[1], e[3], best, NEAREST, e[2], ESTIMATED, tmpl.degraded))
        weighted, reason = _choice(tmpl, pool)
        if len(weighted) == 1:
            ms, e = weighted[0]
        else:
            order = _rotation(weighted)
            ms, e = weighted[order[self._turn(cls, text, len(order))]]
        return _new_result(RouteResult, (e[1], e[3], ms, reason, e[2], ESTIMATED, tmpl.degraded))

    def _turn(self, cls: _Class, text: str, period: int) -> int:
        """The position of ``text``'s rotation for this request (0 the first time), advanced for the next."""
        turns = cls.turns
        i = turns.get(text, 0)
        if i >= period:
            i = 0
        if len(turns) >= self.settings.max_cached_locations and text not in turns:
            turns.clear()
        turns[text] = i + 1 if i + 1 < period else 0
        return i

    def _choose(self, cls: _Class, plan: _Plan, candidates: Sequence[Candidate], excluded: Mapping[str, str],
                nearest_raw: str | None) -> None:
        """Fill ``plan``'s choice from ``candidates`` (already residency- and liveness-checked)."""
        plan.by_region = {c.region: c for c in candidates}
        if not candidates:
            if not cls.regions:
                detail = f"no region of the region map is in jurisdiction {cls.residency}"
            else:
                detail = (f"no eligible region in {cls.residency}: " +
                          ", ".join(f"{r} {why}" for r, why in sorted(excluded.items())))
            plan.error = (detail, dict(excluded))
            return
        healthy = [c for c in candidates if not c.degraded]
        pool = healthy or list(candidates)
        degraded = not healthy
        plan.pool = frozenset(c.region for c in pool)
        in_pool = {c.region: c for c in pool}

        def result(c: Candidate, reason: str) -> RouteResult:
            return RouteResult(c.region, c.endpoint, c.latency_ms, reason, c.jurisdiction, c.latency_source, degraded)

        plan.degraded = degraded
        if cls.home is not None and cls.home in in_pool:
            plan.fixed = result(in_pool[cls.home], HOME)
            return
        for origin in (cls.home, nearest_raw):
            if origin is None or origin not in self._failed_over:
                continue
            target = self._follow(origin, cls.residency)
            if target is not None and target in in_pool:
                plan.fixed = result(in_pool[target], FAILOVER)
                return
        best = pool[0].latency_ms
        limit = best + max(self.settings.latency_tolerance_ms, best * self.settings.latency_tolerance_ratio)
        near = [c for c in pool if c.latency_ms <= limit]
        weighted = [c for c in near if c.weight > 0] or near[:1]
        reason = NEAREST if len(weighted) == 1 else WEIGHTED
        if self.settings.carbon_aware and len(weighted) > 1:
            known = [c.carbon_intensity for c in weighted if c.carbon_intensity is not None]
            if known:
                floor = min(known) + self.settings.carbon_tolerance
                greener = [c for c in weighted if c.carbon_intensity is not None and c.carbon_intensity <= floor]
                if len(greener) < len(weighted):
                    weighted, reason = greener, CARBON
        if len(weighted) == 1:
            plan.fixed = result(weighted[0], reason)
            return
        seq = _wrr_schedule([result(c, reason) for c in weighted], [max(1, c.weight) for c in weighted])
        plan.seq, plan.n, plan.i = tuple(seq), len(seq), 0

    def _follow(self, region: str, residency: str) -> str | None:
        """Where a failed-over region's traffic goes: its target, then the target's target... within residency."""
        seen = {region}
        current = region
        while current in self._failed_over:
            target = self._failed_over[current][0]
            if target is None or target in seen or self.regions[target].jurisdiction != residency:
                return None
            seen.add(target)
            current = target
        return current

    def _filtered(self, cls: _Class, plan: _Plan, tenant_id: str, sovereignty: str | None,
                  session: str | None) -> _Plan:
        """The plan after route filters removed candidates (cached per surviving set, so WRR keeps turning)."""
        if plan.error is not None or self.route_filter is None:
            return plan
        request = RouteRequest(tenant_id, cls.residency, plan.location, sovereignty, session)
        returned = self.route_filter(request, plan.candidates)
        if returned is None:
            return plan
        keep = tuple(c for c in plan.candidates if c in returned)  # a filter only removes
        if len(keep) == len(plan.candidates):
            return plan
        sub = plan.subplans.get(keep)
        if sub is None:
            sub = _Plan(plan.location)
            sub.candidates = keep
            excluded = {r: why for r in cls.regions if (why := self.exclusion(r))}
            excluded.update({c.region: "filtered" for c in plan.candidates if c not in keep})
            nearest = min(((self.latency(plan.location, r)[0], r) for r in cls.regions), default=(0.0, None))[1]
            self._choose(cls, sub, keep, excluded, nearest)
            if len(plan.subplans) > 64:
                plan.subplans.clear()
            plan.subplans[keep] = sub
        return sub

    def _sticky(self, plan: _Plan, tenant_id: str, session: str) -> RouteResult:
        key = (tenant_id, session)
        now = self._clock()
        entry = self._sessions.get(key)
        if entry is not None and entry[1] > now and entry[0] in plan.pool:
            entry[1] = now + self.settings.sticky_ttl
            return plan.sticky_result(entry[0])
        result = plan.pick()
        if entry is not None:
            entry[0], entry[1] = result.region, now + self.settings.sticky_ttl
        else:
            if len(self._sessions) >= self.settings.max_sessions:
                self._evict_sessions(now)
            self._sessions[key] = [result.region, now + self.settings.sticky_ttl]
        return result

    def _evict_sessions(self, now: float) -> None:
        expired = [k for k, (_, until) in self._sessions.items() if until <= now]
        for k in expired:
            del self._sessions[k]
        # Still full: drop the oldest tenth (dicts keep insertion order).
        overflow = len(self._sessions) - self.settings.max_sessions + max(1, self.settings.max_sessions // 10)
        if overflow > 0:
            for k in list(self._sessions)[:overflow]:
                del self._sessions[k]

    def forget_session(self, tenant_id: str, session: str) -> None:
        self._sessions.pop((tenant_id, session), None)

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    # ------------------------------------------------------------ introspection

    def explain(self, client_location: Any, tenant_id: str, sovereignty: str | None = None) -> dict[str, Any]:
        """Every region of the tenant's residency with its latency and exclusion: for people and tests."""
        cls = self._by_tenant.get(tenant_id)
        if cls is None or (sovereignty is not None and sovereignty != cls.residency):
            cls = self._unusual_class(tenant_id, sovereignty)
        location = self.resolve(client_location)
        rows = []
        for name in cls.regions:
            ms, source = self.latency(location, name)
            rows.append({"region": name, "latency_ms": round(ms, 3), "latency_source": source,
                         "excluded": self.exclusion(name), "degraded": self._degraded(name)})
        rows.sort(key=lambda r: (r["latency_ms"], r["region"]))
        return {"tenant": tenant_id, "residency": cls.residency, "home": cls.home,
                "location": {"key": location.key, "kind": location.kind, "lat": location.lat, "lon": location.lon},
                "regions": rows}

    def snapshot(self) -> dict[str, Any]:
        """The engine's view for ``/status``."""
        return {
            "view": "stale" if self.view_stale else "live",
            "failed_over": self.failed_over,
            "excluded": self.excluded(),
            "degraded": sorted(r for r in self.regions if self.exclusion(r) is None and self._degraded(r)),
            "sessions": len(self._sessions),
            "decisions": dict(sorted(self.decisions.items())),
            "no_eligible_region": dict(sorted(self.no_eligible.items())),
        }

    def tenant_ids(self) -> Iterable[str]:
        return self.tenants.keys()
