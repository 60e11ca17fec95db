"""Invariant 2, proved by property-based testing: routing never leaves a tenant's residency
and never picks a dead, left, down or failed-over region; and it refuses only when no
region is eligible.

Hypothesis draws random federations (regions in random jurisdictions and places, some
tenants with homes that are even outside their residency), random client locations, random
failure sets (dead, left, suspect, down, degraded, failed over to random targets including
ones outside the residency or none), random sessions and random route filters that try to
smuggle a candidate in. The oracle below re-derives eligibility from the raw inputs,
independently of the engine's caches.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from meshd.config import Coordinates, Region
from meshd.decisions import Decision
from meshd.tenants import Tenant
from meshd_plugins.routing.engine import (
    Candidate,
    NoEligibleRegion,
    RouteRequest,
    RoutingEngine,
    RoutingSettings,
    UnknownTenant,
)
from meshd_plugins.routing.places import CITIES, COUNTRIES

JURISDICTIONS = ["EU", "US", "CA", "BH", "SG"]
STATES = [None, "alive", "suspect", "dead", "left"]
HEALTH = [None, "healthy", "degraded", "down"]

lat = st.floats(-90, 90, allow_nan=False)
lon = st.floats(-180, 180, allow_nan=False)


@st.composite
def federations(draw: Any) -> tuple[dict[str, Region], dict[str, Tenant]]:
    n = draw(st.integers(1, 9))
    regions = {}
    for i in range(n):
        regions[f"r{i}"] = Region(
            location="x", coordinates=Coordinates(lat=draw(lat), lon=draw(lon)),
            jurisdiction=draw(st.sampled_from(JURISDICTIONS)), endpoint=f"https://r{i}.example.com",
            capacity=draw(st.integers(1, 10_000)), weight=draw(st.integers(0, 300)),
            carbon_intensity=draw(st.one_of(st.none(), st.floats(0, 900))))
    tenants = {}
    for i in range(draw(st.integers(1, 6))):
        tenants[f"t{i}"] = Tenant(residency=draw(st.sampled_from(JURISDICTIONS)),
                                  home=draw(st.one_of(st.none(), st.sampled_from(sorted(regions)))))
    return regions, tenants


def locations(regions: dict[str, Region]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.tuples(lat, lon),
        st.builds(lambda a, b: f"{a:.3f},{b:.3f}", lat, lon),
        st.sampled_from(sorted(regions)),
        st.sampled_from(sorted(COUNTRIES)),
        st.sampled_from(sorted(CITIES)),
    )


settings_strategy = st.builds(
    RoutingSettings,
    latency_tolerance_ms=st.floats(0, 100), latency_tolerance_ratio=st.floats(0, 1), carbon_aware=st.booleans(),
    carbon_tolerance=st.floats(0, 500), weight_by=st.sampled_from(["weight", "capacity"]),
    assume_unseen_up=st.booleans(),
)


class Oracle:
    """Eligibility from first principles: what the engine must respect."""

    def __init__(self, regions: dict[str, Region], tenants: dict[str, Tenant], assume_unseen_up: bool):
        self.regions, self.tenants, self.assume_unseen_up = regions, tenants, assume_unseen_up
        self.state: dict[str, str] = {}
        self.health: dict[str, str] = {}
        self.failed_over: set[str] = set()

    def eligible(self, residency: str) -> set[str]:
        out = set()
        for name, r in self.regions.items():
            if r.jurisdiction != residency or name in self.failed_over:
                continue
            state = self.state.get(name)
            if state in ("dead", "left") or (state is None and not self.assume_unseen_up):
                continue
            if self.health.get(name) == "down":
                continue
            out.add(name)
        return out


def check(engine: RoutingEngine, oracle: Oracle, location: Any, tenant: str, session: str | None,
          allowed: set[str] | None = None) -> None:
    residency = oracle.tenants[tenant].residency
    eligible = oracle.eligible(residency)
    if allowed is not None:
        eligible &= allowed
    try:
        result = engine.route(location, tenant, session=session)
    except NoEligibleRegion as exc:
        assert not eligible, f"refused although {sorted(eligible)} are eligible: {exc}"
        assert set(exc.details["excluded"]) <= {n for n, r in oracle.regions.items() if r.jurisdiction == residency}
        return
    assert result.region in eligible, (
        f"{tenant} ({residency}) from {location!r} went to {result.region} "
        f"({oracle.regions[result.region].jurisdiction}); eligible: {sorted(eligible)}")
    assert result.jurisdiction == residency
    assert result.endpoint == oracle.regions[result.region].endpoint


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), federation=federations(), config=settings_strategy)
def test_route_never_leaves_residency_nor_picks_a_dead_left_down_or_failed_over_region(
        data: Any, federation: tuple[dict[str, Region], dict[str, Tenant]], config: RoutingSettings) -> None:
    regions, tenants = federation
    names = sorted(regions)
    engine = RoutingEngine(regions, tenants, settings=config)
    oracle = Oracle(regions, tenants, config.assume_unseen_up)
    for name in names:
        state = data.draw(st.sampled_from(STATES), label=f"state {name}")
        health = data.draw(st.sampled_from(HEALTH), label=f"health {name}")
        if state is not None:
            engine.set_member(name, state, health)
            oracle.state[name] = state
        elif health is not None:
            engine.set_health(name, health)
        if health is not None:
            oracle.health[name] = health
        if data.draw(st.booleans(), label=f"failed over {name}"):
            target = data.draw(st.one_of(st.none(), st.sampled_from(names)), label=f"target {name}")
            engine.apply_decision(Decision(name, 1, "failover", target, (), 0.0, "x"))
            oracle.failed_over.add(name)
    for _ in range(data.draw(st.integers(1, 8), label="requests")):
        tenant = data.draw(st.sampled_from(sorted(tenants)), label="tenant")
        location = data.draw(locations(regions), label="location")
        session = data.draw(st.one_of(st.none(), st.sampled_from(["s1", "s2"])), label="session")
        check(engine, oracle, location, tenant, session)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), federation=federations())
def test_route_filters_only_narrow_and_never_widen_residency(
        data: Any, federation: tuple[dict[str, Region], dict[str, Tenant]]) -> None:
    regions, tenants = federation
    names = sorted(regions)
    allowed = set(data.draw(st.sets(st.sampled_from(names)), label="filter keeps"))
    smuggle = data.draw(st.sampled_from(names), label="smuggled")
    r = regions[smuggle]
    intruder = Candidate(smuggle, r.jurisdiction, r.endpoint, 0.0, "estimated", 1000, 0.0, False)

    def hostile(request: RouteRequest, candidates: tuple[Candidate, ...]) -> list[Candidate]:
        return [c for c in candidates if c.region in allowed] + [intruder]

    engine = RoutingEngine(regions, tenants, route_filter=hostile)
    oracle = Oracle(regions, tenants, True)
    for name in data.draw(st.sets(st.sampled_from(names)), label="dead"):
        engine.set_member(name, "dead")
        oracle.state[name] = "dead"
    for _ in range(4):
        tenant = data.draw(st.sampled_from(sorted(tenants)), label="tenant")
        check(engine, oracle, data.draw(locations(regions), label="location"), tenant, None, allowed)


@settings(max_examples=100, deadline=None)
@given(federation=federations(), sovereignty=st.sampled_from(JURISDICTIONS + ["JP"]),
       location=st.tuples(lat, lon))
def test_unknown_tenants_route_only_within_the_given_sovereignty(
        federation: tuple[dict[str, Region], dict[str, Tenant]], sovereignty: str, location: Any) -> None:
    regions, tenants = federation
    engine = RoutingEngine(regions, tenants)
    try:
        engine.route(location, "stranger")
        raise AssertionError("an unknown tenant without sovereignty must be refused")
    except UnknownTenant:
        pass
    try:
        result = engine.route(location, "stranger", sovereignty=sovereignty)
    except NoEligibleRegion:
        assert not any(r.jurisdiction == sovereignty for r in regions.values())
    else:
        assert regions[result.region].jurisdiction == sovereignty


class RoutingUnderChurn(RuleBasedStateMachine):
    """Interleaved state changes and requests: cached plans and sessions must never go stale.

    Decisions come with growing terms, as the failover plugin commits them; the
    oracle applies them in that order.
    """

    @initialize(federation=federations())
    def setup(self, federation: tuple[dict[str, Region], dict[str, Tenant]]) -> None:
        self.regions, self.tenants = federation
        self.names = sorted(self.regions)
        self.engine = RoutingEngine(self.regions, self.tenants, settings=RoutingSettings(max_sessions=8))
        self.oracle = Oracle(self.regions, self.tenants, True)
        self.term = 0

    @rule(data=st.data(), state=st.sampled_from(["alive", "suspect", "dead", "left"]))
    def member(self, data: Any, state: str) -> None:
        name = data.draw(st.sampled_from(self.names))
        self.engine.set_member(name, state)
        self.oracle.state[name] = state

    @rule(data=st.data(), health=st.sampled_from(HEALTH))
    def health(self, data: Any, health: str | None) -> None:
        name = data.draw(st.sampled_from(self.names))
        self.engine.set_health(name, health)
        if health is None:
            self.oracle.health.pop(name, None)
        else:
            self.oracle.health[name] = health

    @rule(data=st.data(), failback=st.booleans())
    def decide(self, data: Any, failback: bool) -> None:
        name = data.draw(st.sampled_from(self.names))
        self.term += 1
        if failback:
            self.engine.apply_decision(Decision(name, self.term, "failback", None, (), 0.0, "x"))
            self.oracle.failed_over.discard(name)
        else:
            target = data.draw(st.one_of(st.none(), st.sampled_from(self.names)))
            self.engine.apply_decision(Decision(name, self.term, "failover", target, (), 0.0, "x"))
            self.oracle.failed_over.add(name)

    @rule(data=st.data(), session=st.one_of(st.none(), st.sampled_from(["a", "b", "c"])))
    def request(self, data: Any, session: str | None) -> None:
        tenant = data.draw(st.sampled_from(sorted(self.tenants)))
        check(self.engine, self.oracle, data.draw(locations(self.regions)), tenant, session)

    @invariant()
    def excluded_view_matches(self) -> None:
        if not hasattr(self, "engine"):
            return
        excluded = set(self.engine.excluded())
        everyone = set(self.names)
        eligible_anywhere = set().union(*(self.oracle.eligible(j) for j in JURISDICTIONS))
        assert excluded == everyone - eligible_anywhere


RoutingUnderChurn.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
test_routing_stays_safe_under_membership_and_decision_churn = RoutingUnderChurn.TestCase
