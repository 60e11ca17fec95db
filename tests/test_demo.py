"""`meshd demo`'s pieces without processes: its help, the tenant it follows, and how it reads the daemons' answers.

The demo itself, end to end with real daemons, is tested in
tests/membership/test_membership_demo.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from meshd.cli import main
from meshd.config import RegionMap, load_model_file
from meshd.demo import (
    committed_failover,
    demo_tenants,
    describe_failover,
    describe_route,
    failover_expected,
    pick_tenant,
)
from meshd.i18n import LANGUAGES, Translator
from meshd.tenants import TenantFile

ETC = Path(__file__).resolve().parent.parent / "etc"
T = Translator("en")


@pytest.fixture(scope="module")
def region_map() -> RegionMap:
    return load_model_file(ETC / "region_map.yaml", RegionMap)


@pytest.fixture(scope="module")
def tenants(region_map: RegionMap) -> TenantFile:
    found = demo_tenants(ETC / "tenants.yaml", region_map)
    assert found is not None
    return found


@pytest.mark.parametrize("lang", LANGUAGES)
def test_help_shows_every_option_with_a_finished_sentence(lang: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--lang", lang, "demo", "--help"])
    out = capsys.readouterr().out
    assert "{" not in out, out  # an unformatted message was once the help of --timeout
    for option in ("--kill", "--once", "--timeout", "--regions", "--dir"):
        assert option in out
    if lang == "en":
        help_of_timeout = re.search(r"--timeout TIMEOUT\s+(.*)", out).group(1)  # type: ignore[union-attr]
        assert help_of_timeout.startswith("give up after this many seconds"), out


def test_the_followed_tenant_is_one_the_kill_moves(region_map: RegionMap, tenants: TenantFile) -> None:
    assert pick_tenant(tenants, region_map, "eu-central-1") == "acme-eu"  # its home
    assert pick_tenant(tenants, region_map, "eu-west-1") == "bistro-fr"   # no home: goes to the nearest
    assert pick_tenant(tenants, region_map, "ca-central-1") == "maple-ca"
    assert pick_tenant(tenants, region_map, "us-west-2") == "globex-us"    # only one of its jurisdiction
    assert pick_tenant(None, region_map, "eu-west-1") is None


def test_tenants_the_demo_regions_cannot_serve_are_left_out(tmp_path: Path) -> None:
    three = load_model_file(ETC / "region_map.yaml", RegionMap)
    three = RegionMap(regions={r: three.regions[r] for r in ("us-east-1", "eu-west-1", "ca-central-1")})
    kept = demo_tenants(ETC / "tenants.yaml", three)
    # acme-eu's home (eu-central-1) and the BH and SG jurisdictions are not in the map.
    assert kept is not None and sorted(kept.tenants) == ["bistro-fr", "globex-us", "maple-ca"]
    assert pick_tenant(kept, three, "eu-west-1") == "bistro-fr"
    assert demo_tenants(tmp_path / "no-such.yaml", three) is None


def test_only_a_failover_committed_after_the_kill_counts() -> None:
    view = {"decisions": [
        {"region": "eu-west-1", "action": "failover", "term": 1, "committed_at": 100.0},
        {"region": "eu-west-1", "action": "failback", "term": 2, "committed_at": 200.0},
        {"region": "us-east-1", "action": "failover", "term": 1, "committed_at": 300.0},
    ]}
    assert committed_failover(view, "eu-west-1", since=150.0) is None
    assert committed_failover(view, "eu-west-1", since=50.0)["term"] == 1  # type: ignore[index]
    view["decisions"].append({"region": "eu-west-1", "action": "failover", "term": 3, "committed_at": 400.0})
    assert committed_failover(view, "eu-west-1", since=150.0)["term"] == 3  # type: ignore[index]
    assert committed_failover(None, "eu-west-1", since=0) is None


def test_a_failover_is_awaited_only_when_the_survivors_make_a_quorum() -> None:
    status = {"failover": {"enabled": True, "quorum": 4}}
    assert failover_expected(status, survivors=6) == (True, status["failover"])
    assert failover_expected(status, survivors=3) == (False, status["failover"])
    assert failover_expected({"failover": {"enabled": False, "quorum": 1}}, survivors=6)[0] is False
    assert failover_expected({"members": []}, survivors=6) == (False, {})  # no failover plugin
    assert failover_expected(None, survivors=6) == (False, {})


def test_the_failover_line_names_target_voters_and_time_since_the_kill() -> None:
    decision = {"region": "eu-west-1", "action": "failover", "term": 2, "target": "eu-central-1",
                "voters": ["ca-central-1", "eu-central-1", "us-east-1", "us-west-2"], "committed_at": 1002.25}
    assert describe_failover(T, decision, killed_at=1000.0) == (
        "failover committed: eu-west-1 -> eu-central-1 in term 2, 2.2 s after the kill "
        "(voters: ca-central-1, eu-central-1, us-east-1, us-west-2)")
    line = describe_failover(Translator("de"), {**decision, "target": None}, killed_at=1000.0)
    assert line.startswith("Failover beschlossen: eu-west-1 in Amtszeit 2, 2,2 s nach dem Kill, aber keine Region")


def test_route_lines_for_an_answer_a_refusal_and_no_answer() -> None:
    ok = {"ok": True, "tenant": "bistro-fr", "residency": "EU", "region": "eu-central-1", "reason": "failover",
          "answered_by": "us-east-1"}
    assert describe_route(T, "bistro-fr", "eu-west-1", "us-east-1", 200, ok) == (
        "route for bistro-fr (EU) from eu-west-1: eu-central-1, the committed failover target "
        "(answered by us-east-1)")
    refused = {"ok": False, "error": "no_eligible_region", "residency": "CA", "message": "x",
               "excluded": {"ca-central-1": "failed_over"}}
    assert describe_route(T, "maple-ca", "ca-central-1", "us-east-1", 503, refused) == (
        "route for maple-ca (CA) from ca-central-1: refused: no region of CA can take the request: "
        "ca-central-1 failed over")
    assert describe_route(T, "maple-ca", "ca-central-1", "us-east-1", 404, "not found") == (
        "route for maple-ca from ca-central-1: us-east-1 gave no route answer (HTTP 404)")


def test_a_smaller_map_beside_the_sample_pipeline_still_gives_daemons_that_start(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The sample pipeline names seven regions: copied into a three-region demo, every daemon would exit 2."""
    from meshd.demo import demo_shared_files
    from meshd.plugins import Hooks
    from meshd.testing import LocalFederation

    source = yaml.safe_load((ETC / "region_map.yaml").read_text())
    source["regions"] = {r: source["regions"][r] for r in ("us-east-1", "eu-west-1", "ca-central-1")}
    beside = tmp_path / "etc"
    beside.mkdir()
    (beside / "region_map.yaml").write_text(yaml.safe_dump(source))
    (beside / "region_pipeline.yaml").write_text((ETC / "region_pipeline.yaml").read_text())
    (beside / "alert_routes.yaml").write_text((ETC / "alert_routes.yaml").read_text())
    names = Hooks.load().federation_files()
    assert "region_pipeline.yaml" in names  # the deploy plugin asks for it: the demo is what leaves it out
    shared = demo_shared_files(beside, names)
    assert [p.name for p in shared] == ["alert_routes.yaml"]
    # As run_demo builds it (no process started): each region's config checks out, so `meshd run` starts.
    fed = LocalFederation(tmp_path / "demo", regions_file=beside / "region_map.yaml", federation="demo",
                          shared_files=shared, samples=True)
    for region in fed.regions:
        capsys.readouterr()
        assert main(["check-config", str(fed.config_path(region))]) == 0, capsys.readouterr()
    # And the reason it matters: with the sample pipeline copied in, the same check fails on its regions.
    (fed.config_path("us-east-1").parent / "region_pipeline.yaml").write_text((ETC / "region_pipeline.yaml").read_text())
    assert main(["check-config", str(fed.config_path("us-east-1"))]) == 2
    assert "'us-west-2' is not in the region map" in capsys.readouterr().err
