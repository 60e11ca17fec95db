"""The routing engine on its own (no NATS): weights, stickiness, carbon tie-break, failover redirects, errors."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from meshd.config import Coordinates, Region, RegionMap, load_model_file
from meshd.decisions import Decision
from meshd.tenants import Tenant, TenantFile
from meshd_plugins.routing.engine import (
    Candidate,
    LatencyModel,
    NoEligibleRegion,
    RouteRequest,
    RoutingEngine,
    RoutingSettings,
    SovereigntyConflict,
    UnknownLocation,
    UnknownTenant,
    great_circle_km,
    resolve_location,
)

ROOT = Path(__file__).resolve().parents[2]
REGIONS = load_model_file(ROOT / "etc" / "region_map.yaml", RegionMap).regions
TENANTS = load_model_file(ROOT / "etc" / "tenants.yaml", TenantFile)


def region(lat: float, lon: float, jurisdiction: str = "EU", weight: int = 100, carbon: float | None = None,
           capacity: int = 1000) -> Region:
    return Region(location="x", coordinates=Coordinates(lat=lat, lon=lon), jurisdiction=jurisdiction,
                  endpoint="https://example.com", capacity=capacity, weight=weight, carbon_intensity=carbon)


def decision(region: str, term: int, action: str = "failover", target: str | None = None) -> Decision:
    return Decision(region, term, action, target, ("a", "b", "c", "d"), 0.0, "a")  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def engine(**kw: Any) -> RoutingEngine:
    return RoutingEngine(REGIONS, TENANTS, **kw)


# ---------------------------------------------------------------- locations and latency


def test_locations_resolve_from_every_documented_form() -> None:
    assert resolve_location("DE").kind == "country"
    assert resolve_location("de").key == "DE"
    assert resolve_location("FRA").kind == "city"
    assert resolve_location("eu-west-1", REGIONS).kind == "region"
    loc = resolve_location("-33.87, 151.21")
    assert (loc.kind, loc.lat, loc.lon) == ("coordinates", -33.87, 151.21)
    assert resolve_location((48.1, 11.6)).kind == "coordinates"
    assert engine().route([48.1, 11.6], "acme-eu").region == engine().route((48.1, 11.6), "acme-eu").region
    assert resolve_location("hq", places={"hq": (1.0, 2.0)}).kind == "place"
    for bad in ("", "Atlantis", "ZZ", "91,0", "0,181", "XYZW"):
        with pytest.raises(UnknownLocation):
            resolve_location(bad, REGIONS)


def test_continents_and_macro_regions_are_client_locations() -> None:
    names = ["europe", "north-america", "south-america", "asia-pacific", "middle-east", "africa"]
    for name in names:
        loc = resolve_location(name, REGIONS)
        assert (loc.kind, loc.key) == ("macro_region", name)
    # Any case, '-', '_' or spaces: one location, one RTT row name.
    assert {resolve_location(v).key for v in ("North America", "north_america", "NORTH-AMERICA", " north  america ")} \
        == {"north-america"}
    # The seed's own example: routeRequest('europe', 'tenant-123', 'EU').
    result = engine().route("europe", "tenant-123", sovereignty="EU")
    assert (result.region, result.jurisdiction, result.reason) == ("eu-central-1", "EU", "nearest")
    assert engine().route("north-america", "newco", sovereignty="US").region == "us-east-1"
    assert engine().route("Middle East", "newco", sovereignty="BH").region == "me-south-1"
    assert engine().route("asia-pacific", "newco", sovereignty="SG").region == "ap-southeast-1"
    # A macro-region never widens the residency: an EU tenant from Asia still stays in the EU.
    assert engine().route("asia-pacific", "bistro-fr").jurisdiction == "EU"
    table = engine(rtt={"europe": {"eu-west-1": 12.0}})
    assert table.latency(resolve_location("Europe"), "eu-west-1") == (12.0, "configured")
    assert table.explain("europe", "bistro-fr")["location"]["kind"] == "macro_region"
    for bad in ("europa", "north", "antarctica", "america"):
        with pytest.raises(UnknownLocation, match="macro-region"):
            resolve_location(bad, REGIONS)


def test_great_circle_matches_known_distances() -> None:
    # Paris - London is about 344 km; Frankfurt - Dublin about 1090 km.
    assert 335 < great_circle_km(48.86, 2.35, 51.51, -0.13) < 350
    assert 1070 < great_circle_km(50.11, 8.68, 53.35, -6.26) < 1110


def test_latency_comes_from_measurement_then_table_then_distance() -> None:
    model = LatencyModel(overhead_ms=1.0, path_inflation=1.0, fiber_km_per_ms=100.0)
    e = RoutingEngine(REGIONS, TENANTS, settings=RoutingSettings(use_measured_rtt=True, latency_model=model),
                      rtt={"FR": {"eu-west-1": 42.0}, "eu-central-1": {"eu-west-1": 21.0}}, local_region="eu-west-1")
    paris = e.resolve("FR")
    assert e.latency(paris, "eu-west-1") == (42.0, "configured")
    ms, source = e.latency(paris, "eu-central-1")
    km = great_circle_km(paris.lat, paris.lon, 50.11, 8.68)
    assert source == "estimated" and ms == pytest.approx(1.0 + 2 * km / 100.0)
    # A region-to-region row is symmetric.
    assert e.latency(e.resolve("eu-west-1"), "eu-central-1") == (21.0, "configured")
    # This daemon's measured RTT wins, but only from its own region.
    e.set_member("eu-central-1", "alive", rtt_ms=3.5)
    assert e.latency(e.resolve("eu-west-1"), "eu-central-1") == (3.5, "measured")
    assert e.latency(e.resolve("DE"), "eu-central-1")[1] == "estimated"


def test_measured_rtt_is_ignored_unless_enabled() -> None:
    e = engine(local_region="eu-west-1")
    e.set_member("eu-central-1", "alive", rtt_ms=0.4)
    assert e.latency(e.resolve("eu-west-1"), "eu-central-1")[1] == "estimated"


# ---------------------------------------------------------------- residency and errors


def test_unknown_tenant_needs_a_sovereignty() -> None:
    e = engine()
    with pytest.raises(UnknownTenant):
        e.route("DE", "nobody")
    assert e.route("NYC", "nobody", sovereignty="US").jurisdiction == "US"


def test_sovereignty_cannot_move_a_tenant_out_of_its_residency() -> None:
    e = engine()
    assert e.route("DE", "acme-eu", sovereignty="EU").region == "eu-central-1"
    with pytest.raises(SovereigntyConflict) as info:
        e.route("NYC", "acme-eu", sovereignty="US")
    assert info.value.to_json()["residency"] == "EU"


def test_an_eu_tenant_stays_in_the_eu_even_from_new_york() -> None:
    e = engine()
    result = e.route("NYC", "bistro-fr")
    assert result.region in ("eu-west-1", "eu-central-1") and result.jurisdiction == "EU"


def test_no_eligible_region_is_an_error_naming_every_exclusion() -> None:
    e = engine()
    e.set_member("eu-west-1", "dead")
    e.apply_decision(decision("eu-central-1", 1, target="us-east-1"))
    with pytest.raises(NoEligibleRegion) as info:
        e.route("DE", "acme-eu")
    assert info.value.details["excluded"] == {"eu-west-1": "dead", "eu-central-1": "failed_over"}
    assert e.no_eligible == {"EU": 1}
    with pytest.raises(NoEligibleRegion):
        e.route("DE", "nobody", sovereignty="JP")  # a jurisdiction with no region at all


def test_left_and_down_regions_take_no_traffic() -> None:
    e = engine()
    e.set_member("eu-central-1", "left")
    assert e.route("DE", "acme-eu").region == "eu-west-1"
    e.set_member("eu-central-1", "alive", health="down")
    assert e.route("DE", "acme-eu").region == "eu-west-1"
    e.set_health("eu-central-1", "healthy")
    assert e.route("DE", "acme-eu").region == "eu-central-1"


def test_unseen_regions_can_be_excluded_by_setting() -> None:
    e = engine(settings=RoutingSettings(assume_unseen_up=False))
    with pytest.raises(NoEligibleRegion):
        e.route("DE", "acme-eu")
    e.set_member("eu-west-1", "alive")
    assert e.route("DE", "acme-eu").region == "eu-west-1"


def test_own_region_isolated_marks_the_view_stale_not_dead() -> None:
    e = engine(local_region="eu-west-1")
    e.set_member("eu-west-1", "isolated")
    assert e.view_stale and e.exclusion("eu-west-1") is None
    e.set_member("eu-west-1", "alive")
    assert not e.view_stale


# ---------------------------------------------------------------- choice


def test_home_wins_while_healthy_then_nearest() -> None:
    e = engine()
    assert e.route("IE", "acme-eu").reason == "home"
    assert e.route("IE", "acme-eu").region == "eu-central-1"
    e.set_member("eu-central-1", "suspect")  # degraded tier: a healthy region is preferred
    result = e.route("IE", "acme-eu")
    assert (result.region, result.reason, result.degraded) == ("eu-west-1", "nearest", False)


def test_only_degraded_regions_left_are_still_used_and_flagged() -> None:
    e = engine()
    e.set_member("eu-west-1", "dead")
    e.set_member("eu-central-1", "alive", health="degraded")
    result = e.route("IE", "bistro-fr")
    assert result.region == "eu-central-1" and result.degraded


def test_weighted_round_robin_shares_follow_weights() -> None:
    regions = {"a": region(50.0, 8.0, weight=300), "b": region(50.0, 8.1, weight=100), "c": region(50.0, 8.2, weight=0),
               "far": region(10.0, 100.0, weight=1000)}
    e = RoutingEngine(regions, {"t": Tenant(residency="EU")})
    counts = Counter(e.route("50,8.05", "t").region for _ in range(400))
    assert counts == {"a": 300, "b": 100}  # exact over whole periods; weight 0 drains; far is out of tolerance
    assert e.route("50,8.05", "t").reason == "weighted"
    # Smooth: the minority region is spread out, not bunched.
    seq = [e.route("50,8.05", "t").region for _ in range(8)]
    assert max(len(run) for run in "".join(seq).split("b")) <= len("a") * 3


def test_weights_can_come_from_capacity() -> None:
    regions = {"a": region(50.0, 8.0, capacity=3000), "b": region(50.0, 8.1, capacity=1000)}
    e = RoutingEngine(regions, {"t": Tenant(residency="EU")}, settings=RoutingSettings(weight_by="capacity"))
    assert Counter(e.route("50,8.05", "t").region for _ in range(400)) == {"a": 300, "b": 100}


def test_tolerance_decides_who_shares() -> None:
    regions = {"near": region(50.0, 8.0), "mid": region(50.0, 12.0)}  # ~290 km apart: ~4 ms more
    tenants = {"t": Tenant(residency="EU")}
    tight = RoutingEngine(regions, tenants, settings=RoutingSettings(latency_tolerance_ms=1,
                                                                     latency_tolerance_ratio=0))
    assert {tight.route("50,8", "t").region for _ in range(10)} == {"near"}
    loose = RoutingEngine(regions, tenants, settings=RoutingSettings(latency_tolerance_ms=10))
    assert {loose.route("50,8", "t").region for _ in range(10)} == {"near", "mid"}


def test_carbon_tie_break_prefers_the_greener_of_close_regions() -> None:
    regions = {"coal": region(50.0, 8.0, carbon=700), "hydro": region(50.0, 9.0, carbon=30),
               "unknown": region(50.0, 8.5), "far-green": region(10.0, 100.0, carbon=1)}
    tenants = {"t": Tenant(residency="EU")}
    plain = RoutingEngine(regions, tenants)
    assert {plain.route("50,8", "t").region for _ in range(9)} == {"coal", "hydro", "unknown"}
    green = RoutingEngine(regions, tenants, settings=RoutingSettings(carbon_aware=True))
    result = green.route("50,8", "t")
    assert (result.region, result.reason) == ("hydro", "carbon")  # far-green is outside the latency tolerance
    # Ties within carbon_tolerance share by weight again.
    tolerant = RoutingEngine(regions, tenants, settings=RoutingSettings(carbon_aware=True, carbon_tolerance=700))
    assert {tolerant.route("50,8", "t").region for _ in range(4)} == {"coal", "hydro"}


def test_sticky_session_stays_while_healthy_and_moves_when_not() -> None:
    clock = Clock()
    regions = {"a": region(50.0, 8.0), "b": region(50.0, 8.1), "c": region(50.0, 8.2)}
    e = RoutingEngine(regions, {"t": Tenant(residency="EU")}, settings=RoutingSettings(sticky_ttl=60), clock=clock)
    first = e.route("50,8.1", "t", session="s1").region
    assert all(e.route("50,8.1", "t", session="s1").region == first for _ in range(20))
    assert e.route("50,8.1", "t", session="s1").reason == "sticky"
    # Other sessions still spread.
    assert len({e.route("50,8.1", "t", session=f"x{i}").region for i in range(6)}) == 3
    # The region degrades: the session moves, and stays on its new region.
    e.set_member(first, "suspect")
    moved = e.route("50,8.1", "t", session="s1").region
    assert moved != first
    e.set_member(first, "alive")
    assert e.route("50,8.1", "t", session="s1").region == moved
    # Expiry: after the TTL without use the session is chosen afresh (sliding window).
    clock.now += 59
    assert e.route("50,8.1", "t", session="s1").reason == "sticky"
    clock.now += 61
    assert e.route("50,8.1", "t", session="s1").reason == "weighted"


def test_session_table_is_bounded() -> None:
    e = engine(settings=RoutingSettings(max_sessions=100))
    for i in range(1000):
        e.route("DE", "bistro-fr", session=f"s{i}")
    assert e.session_count <= 100


# ---------------------------------------------------------------- failover and failback


def test_failover_sends_the_regions_tenants_to_the_committed_target() -> None:
    e = engine()
    assert e.route("NYC", "globex-us").region == "us-east-1"
    assert e.apply_decision(decision("us-east-1", 1, target="us-west-2"))
    result = e.route("NYC", "globex-us")
    assert (result.region, result.reason) == ("us-west-2", "failover")
    # A non-homed tenant whose nearest region failed over goes to the target too.
    assert e.route("NYC", "nobody", sovereignty="US").reason == "failover"
    # Failed over stays excluded even when the region is alive again, until failback.
    e.set_member("us-east-1", "alive")
    assert e.route("NYC", "globex-us").region == "us-west-2"
    assert e.apply_decision(decision("us-east-1", 1, action="failback"))
    assert e.route("NYC", "globex-us").region == "us-east-1"


def test_target_outside_residency_is_never_used() -> None:
    e = engine()
    e.apply_decision(decision("eu-central-1", 1, target="us-east-1"))  # a broken decision must not leak
    result = e.route("DE", "acme-eu")
    assert result.region == "eu-west-1" and result.reason == "nearest"


def test_failover_chains_are_followed_within_residency() -> None:
    regions = {"a": region(50.0, 8.0), "b": region(40.0, -3.0), "c": region(60.0, 25.0)}
    e = RoutingEngine(regions, {"t": Tenant(residency="EU", home="a")})
    e.apply_decision(decision("a", 1, target="b"))
    e.apply_decision(decision("b", 1, target="c"))
    assert (e.route("50,8", "t").region, e.route("50,8", "t").reason) == ("c", "failover")


def test_decisions_are_idempotent_and_order_independent() -> None:
    e1, e2 = engine(), engine()
    ds = [decision("us-east-1", 1, target="us-west-2"), decision("us-east-1", 1, "failback"),
          decision("us-east-1", 2, target="us-west-2"), decision("us-east-1", 2, "failback")]
    for d in ds:
        e1.apply_decision(d)
    for d in reversed(ds):
        e2.apply_decision(d)
    assert e1.failed_over == e2.failed_over == {}
    assert not e1.apply_decision(ds[0])  # stale: an older term never undoes a newer decision
    assert e1.apply_decision(decision("us-east-1", 3, target="us-west-2"))
    assert e1.failed_over == {"us-east-1": {"target": "us-west-2", "term": 3}}
    assert e1.apply_decision({"region": "us-east-1", "term": 3, "action": "failback", "target": None})
    assert e1.failed_over == {}


def test_state_changes_invalidate_cached_plans() -> None:
    e = engine()
    assert e.route("DE", "acme-eu").region == "eu-central-1"
    e.set_member("eu-central-1", "dead")
    assert e.route("DE", "acme-eu").region == "eu-west-1"
    e.set_member("eu-central-1", "alive")
    assert e.route("DE", "acme-eu").region == "eu-central-1"


def test_reconfigure_keeps_live_state() -> None:
    e = engine()
    e.apply_decision(decision("eu-central-1", 4, target="eu-west-1"))
    e.reconfigure(REGIONS, TENANTS, settings=RoutingSettings(carbon_aware=True))
    assert e.route("DE", "acme-eu").region == "eu-west-1"
    assert e.settings.carbon_aware


# ---------------------------------------------------------------- filters


def test_route_filter_can_remove_but_never_add() -> None:
    seen: list[tuple[RouteRequest, tuple[Candidate, ...]]] = []
    smuggled = Candidate("us-east-1", "US", "https://evil", 0.1, "estimated", 100, None, False)

    def only_west(request: RouteRequest, candidates: tuple[Candidate, ...]) -> list[Candidate]:
        seen.append((request, candidates))
        return [c for c in candidates if c.region == "eu-west-1"] + [smuggled]

    e = engine(route_filter=only_west)
    result = e.route("DE", "acme-eu", session="s")
    assert result.region == "eu-west-1"
    request, candidates = seen[0]
    assert request.tenant_id == "acme-eu" and request.residency == "EU" and request.session == "s"
    assert {c.region for c in candidates} == {"eu-west-1", "eu-central-1"}

    def nothing(request: RouteRequest, candidates: tuple[Candidate, ...]) -> list[Candidate]:
        return [smuggled]

    e.route_filter = nothing
    with pytest.raises(NoEligibleRegion) as info:
        e.route("DE", "acme-eu")
    assert info.value.details["excluded"] == {"eu-west-1": "filtered", "eu-central-1": "filtered"}


def test_counters_count_decisions_by_region() -> None:
    e = engine()
    for _ in range(5):
        e.route("DE", "acme-eu")
    e.route("NYC", "globex-us")
    snap = e.snapshot()
    assert snap["decisions"]["eu-central-1"] == 5 and snap["decisions"]["us-east-1"] == 1
    assert snap["view"] == "live" and snap["failed_over"] == {} and snap["excluded"] == {}


def test_explain_lists_every_region_of_the_residency() -> None:
    e = engine()
    e.set_member("eu-west-1", "dead")
    doc = e.explain("DE", "acme-eu")
    assert doc["residency"] == "EU" and [r["region"] for r in doc["regions"]] == ["eu-central-1", "eu-west-1"]
    assert doc["regions"][1]["excluded"] == "dead"
