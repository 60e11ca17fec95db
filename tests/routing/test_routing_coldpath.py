"""The cold path (a plan from the per-class template, for locations whose latencies are all
estimated) decides exactly what the general planner decides.

Hypothesis draws federations, settings, member states, health, failovers (to targets inside,
outside or missing from the residency) and client coordinates; for every tenant class the
template-built plan must equal, field for field, the plan the general planner builds from
scratch: the choice or rotation, the error, the tier, the candidates filters see. Exact
equality, floats included: the template path computes the same distances operation for
operation.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshd.routefilter import Location
from meshd_plugins.routing.engine import RoutingEngine, RoutingError, RoutingSettings, resolve_location

from .test_routing_engine import REGIONS, TENANTS, decision, region
from .test_routing_properties import HEALTH, STATES, federations, lat, lon, settings_strategy


def plan_fields(plan: Any) -> dict[str, Any]:
    return {"fixed": plan.fixed, "seq": plan.seq, "error": plan.error, "pool": plan.pool,
            "degraded": plan.degraded, "candidates": plan.candidates, "by_region": plan.by_region}


def assert_same_plans(engine: RoutingEngine, location: Location) -> None:
    classes = list(engine._classes.values())
    assert classes
    for cls in classes:
        fast = engine._estimated_plan(cls, location)
        exact = engine._exact_plan(cls, location)
        assert plan_fields(fast) == plan_fields(exact), (cls.residency, cls.home, location)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fed=federations(), cfg=settings_strategy, data=st.data())
def test_template_plans_equal_exact_plans(fed: Any, cfg: Any, data: Any) -> None:
    regions, tenants = fed
    engine = RoutingEngine(regions, tenants, settings=cfg)
    names = sorted(regions)
    for name in names:
        engine.set_member(name, data.draw(st.sampled_from([s for s in STATES if s])), data.draw(
            st.sampled_from(HEALTH)))
    for term, name in enumerate(data.draw(st.lists(st.sampled_from(names), max_size=4)), start=1):
        target = data.draw(st.one_of(st.none(), st.sampled_from(names)))
        engine.apply_decision(decision(name, term, "failover", target))
    for _ in range(3):
        location = resolve_location((data.draw(lat), data.draw(lon)))
        assert_same_plans(engine, location)
        # The same template, reused for another location, still gives the exact plan.
        assert_same_plans(engine, resolve_location(f"{data.draw(lat):.4f},{data.draw(lon):.4f}"))


def test_the_template_follows_the_federation_state() -> None:
    """A cached template is thrown away with the plans: a dead region is never chosen from it."""
    eu = {"near": region(50.0, 8.0), "far": region(38.7, -9.1)}
    engine = RoutingEngine(eu, {"t": TENANTS.tenants[next(iter(TENANTS.tenants))].model_copy(
        update={"residency": "EU", "home": None})})
    assert engine.route("50.1,8.6", "t").region == "near"
    cls = engine._by_tenant["t"]
    assert cls.template is not None
    engine.set_member("near", "dead")
    assert cls.template is None
    assert engine.route("50.2,8.6", "t").region == "far"
    engine.apply_decision(decision("far", 1, "failover", "near"))
    with pytest.raises(Exception) as err:
        engine.route("50.3,8.6", "t")
    assert getattr(err.value, "code", None) == "no_eligible_region"


def test_weighted_rotation_from_raw_coordinates_keeps_turning() -> None:
    """A rotation's position is kept per coordinates, so repeated requests share the load by weight."""
    eu = {"a": region(50.0, 8.0, weight=300), "b": region(50.0, 8.01, weight=100)}
    engine = RoutingEngine(eu, {}, )
    picks = [engine.route("49.0,7.0", "anyone", sovereignty="EU").region for _ in range(400)]
    assert picks.count("a") == 300 and picks.count("b") == 100


def test_a_cold_rotation_builds_no_plan_and_its_positions_are_bounded() -> None:
    """Weighted answers for raw coordinates keep one position each, never a plan, and no more than the cache size."""
    eu = {"a": region(50.0, 8.0, weight=300), "b": region(50.0, 8.01, weight=100)}
    engine = RoutingEngine(eu, {}, settings=RoutingSettings(max_cached_locations=3))
    texts = [f"49.{k},7.0" for k in range(7)]
    for text in texts:
        assert engine.route(text, "anyone", sovereignty="EU").reason == "weighted"
    cls = engine._classes[("EU", None)]
    assert not cls.plans
    assert 0 < len(cls.turns) <= 3


def test_a_session_from_rotating_coordinates_takes_the_rotation_over() -> None:
    """A plan built later for the same coordinates (a session needs one) goes on from the kept position."""
    eu = {"a": region(50.0, 8.0, weight=100), "b": region(50.0, 8.01, weight=100), "c": region(50.0, 8.02)}
    engine = RoutingEngine(eu, {})
    text = "49.0,7.0"
    expected = exact_picks_for(engine, ("EU", None), text, 6)
    got = [engine.route(text, "anyone", sovereignty="EU") for _ in range(2)]
    got.append(engine.route(text, "anyone", sovereignty="EU", session="s1"))
    got += [engine.route(text, "anyone", sovereignty="EU") for _ in range(3)]
    assert [r.region for r in got] == [r.region for r in expected]
    assert [r.reason for r in got] == ["weighted"] * 6


def exact_picks_for(engine: RoutingEngine, key: tuple[str, str | None], text: str, calls: int) -> list[Any]:
    plan = engine._exact_plan(engine._class(*key), resolve_location(text))
    return [plan.pick() for _ in range(calls)]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fed=federations(), cfg=settings_strategy, data=st.data())
def test_interleaved_cold_rotations_turn_as_kept_plans_would(fed: Any, cfg: Any, data: Any) -> None:
    """Requests from a few coordinates, interleaved: each location's answers are its own plan's, turning
    from where it was; a change of the federation starts every rotation again, as it drops every plan."""
    regions, tenants = fed
    engine = RoutingEngine(regions, tenants, settings=cfg)
    names = sorted(regions)
    tenant = data.draw(st.sampled_from(sorted(tenants)))
    texts = data.draw(st.lists(st.builds(lambda a, b: f"{a:.2f},{b:.2f}", lat, lon), min_size=1, max_size=3,
                               unique=True))
    plans = {text: engine._exact_plan(engine._by_tenant[tenant], resolve_location(text)) for text in texts}
    for _ in range(3):
        for k in data.draw(st.lists(st.integers(0, len(texts) - 1), max_size=12)):
            plan = plans[texts[k]]
            expected = "no_eligible_region" if plan.error is not None else plan.pick()
            assert routed(engine, tenant, texts[k], 1) == [expected], (tenant, texts[k])
        if engine.set_member(data.draw(st.sampled_from(names)), data.draw(st.sampled_from([s for s in STATES if s])),
                             data.draw(st.sampled_from(HEALTH))):
            plans = {text: engine._exact_plan(engine._by_tenant[tenant], resolve_location(text)) for text in texts}


def test_sample_federation_cold_routes_match_the_general_planner() -> None:
    engine = RoutingEngine(REGIONS, TENANTS)
    for tenant in TENANTS.tenants:
        engine.route("0,0", tenant)
    engine.set_member("eu-west-1", "suspect")
    engine.apply_decision(decision("us-east-1", 1, "failover", "us-west-2"))
    for la in range(-80, 81, 20):
        for lo in range(-180, 181, 30):
            assert_same_plans(engine, resolve_location(f"{la},{lo}"))


def exact_picks(engine: RoutingEngine, tenant: str, text: str, calls: int) -> list[Any]:
    """What ``calls`` routes of ``tenant`` from ``text`` give by the general planner, or the error's code."""
    plan = engine._exact_plan(engine._by_tenant[tenant], resolve_location(text))
    if plan.error is not None:
        return ["no_eligible_region"] * calls
    return [plan.pick() for _ in range(calls)]


def routed(engine: RoutingEngine, tenant: str, text: str, calls: int) -> list[Any]:
    out: list[Any] = []
    for _ in range(calls):
        try:
            out.append(engine.route(text, tenant))
        except RoutingError as exc:
            out.append(exc.code)
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fed=federations(), cfg=settings_strategy, data=st.data())
def test_unseen_coordinates_route_as_the_general_planner_across_membership_changes(fed: Any, cfg: Any,
                                                                                 data: Any) -> None:
    """route() answers most unseen coordinates without a plan; its answers (rotations included) are the planner's."""
    regions, tenants = fed
    engine = RoutingEngine(regions, tenants, settings=cfg)
    names = sorted(regions)
    seen: set[str] = set()
    for term in range(1, 4):  # the federation changes between rounds: templates must follow it
        for name in data.draw(st.lists(st.sampled_from(names), max_size=3)):
            engine.set_member(name, data.draw(st.sampled_from([s for s in STATES if s])),
                              data.draw(st.sampled_from(HEALTH)))
        if data.draw(st.booleans()):
            engine.apply_decision(decision(data.draw(st.sampled_from(names)), term, "failover",
                                           data.draw(st.one_of(st.none(), st.sampled_from(names)))))
        for tenant in sorted(tenants):
            text = f"{data.draw(lat):.4f},{data.draw(lon):.4f}"
            if text in seen:
                continue  # not unseen: a kept rotation goes on turning, as it should
            seen.add(text)
            expected = exact_picks(engine, tenant, text, 3)
            assert routed(engine, tenant, text, 3) == expected, (tenant, text)
