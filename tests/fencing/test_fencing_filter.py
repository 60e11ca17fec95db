"""The fenced region's route filter, and how the CLI shows a fenced region's answers."""

from __future__ import annotations

from pathlib import Path

from meshd import Candidate, Location, RouteRequest
from meshd.config import RegionMap, load_model_file
from meshd.i18n import Translator
from meshd_plugins.fencing import LocalRegionFence
from meshd_plugins.health.cli import render as render_health
from meshd_plugins.routing.cli import render_error, render_result

ROOT = Path(__file__).resolve().parents[2]
REGIONS = load_model_file(ROOT / "etc" / "region_map.yaml", RegionMap).regions
HERE = Location("DE", 51.0, 10.0, "country")


def candidates(*names: str) -> tuple[Candidate, ...]:
    return tuple(Candidate(n, REGIONS[n].jurisdiction, REGIONS[n].endpoint, 10.0 + i, "estimated", 100, None, False)
                 for i, n in enumerate(names))


def test_a_fenced_region_leaves_tenants_it_shares_a_residency_with_to_its_sibling() -> None:
    fence = LocalRegionFence("eu-west-1", REGIONS)
    kept = fence.meshd_route_filter(RouteRequest("bistro-fr", "EU", HERE), candidates("eu-west-1", "eu-central-1"))
    assert [c.region for c in kept] == ["eu-central-1"]
    # Even when the sibling looks excluded in its stale view: the fenced region does not take the tenant.
    assert fence.meshd_route_filter(RouteRequest("bistro-fr", "EU", HERE), candidates("eu-west-1")) == []


def test_tenants_whose_residency_has_only_this_region_stay() -> None:
    fence = LocalRegionFence("ca-central-1", REGIONS)
    assert fence.shared == frozenset()
    assert fence.meshd_route_filter(RouteRequest("maple-ca", "CA", HERE), candidates("ca-central-1")) is None


def test_other_residencies_are_left_alone() -> None:
    fence = LocalRegionFence("eu-west-1", REGIONS)
    assert fence.meshd_route_filter(RouteRequest("globex-us", "US", HERE), candidates("us-east-1", "us-west-2")) is None


def test_the_cli_says_the_answering_region_is_fenced() -> None:
    t = Translator("en")
    reply = {"ok": True, "tenant": "maple-ca", "from": "YUL", "region": "ca-central-1", "endpoint": "https://x",
             "latency_ms": 3.0, "latency_source": "estimated", "reason": "nearest", "answered_by": "ca-central-1",
             "view": "stale", "fenced": "isolated"}
    text = render_result(t, reply)
    assert "the ca-central-1 daemon is fenced (ca-central-1 has been cut off from the federation" in text
    error = render_error(t, {"ok": False, "error": "no_eligible_region", "residency": "EU",
                             "excluded": {"eu-west-1": "filtered"}, "answered_by": "eu-west-1",
                             "fenced": "failed_over"})
    assert "eu-west-1 (removed by a route filter)" in error
    assert "is fenced (a committed failover of eu-west-1 is in force)" in error
    assert "fenced" not in render_result(t, {**reply, "fenced": None, "view": "live"})


def test_meshd_health_shows_fenced_and_what_the_probes_say() -> None:
    doc = {"status": "fenced", "verdict": "healthy", "reasons": [], "fenced": {"reason": "isolated", "since": 1.0},
           "probes": []}
    text = render_health(Translator("fr"), "eu-west-1", doc, 2.0)
    assert text.splitlines()[0] == "la région eu-west-1 est clôturée"
    assert "clôturée : eu-west-1 est coupée de la fédération" in text and "ses sondes disent en bonne santé" in text
