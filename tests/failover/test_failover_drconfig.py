"""dr_config.yaml: checked against the region map, and targets never cross a jurisdiction."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from meshd.cli import main
from meshd.config import RegionMap, load_model_file
from meshd.testing import write_federation
from meshd_plugins.failover.drconfig import DRConfig, DRTargets, choose_target, load_dr_config

ROOT = Path(__file__).resolve().parents[2]
REGION_MAP = load_model_file(ROOT / "etc" / "region_map.yaml", RegionMap)


def test_the_shipped_dr_config_is_valid_and_covers_every_region() -> None:
    dr, issues = load_dr_config(ROOT / "etc" / "dr_config.yaml", REGION_MAP)
    assert issues == [] and dr is not None
    assert set(dr.regions) == set(REGION_MAP.regions)
    for region in REGION_MAP.regions:
        home = REGION_MAP.regions[region].jurisdiction
        assert all(REGION_MAP.regions[t].jurisdiction == home for t in dr.order(region))
    assert dr.regions["eu-west-1"].pair == "eu-central-1" and dr.regions["us-east-1"].pair == "us-west-2"
    for lonely in ("ca-central-1", "me-south-1", "ap-southeast-1"):
        choice = choose_target(lonely, REGION_MAP, dr, lambda r: True, {})
        assert choice.target is None and choice.tier == "none"


def test_errors_name_file_key_and_line(tmp_path: Path) -> None:
    path = tmp_path / "dr_config.yaml"
    path.write_text(
        "regions:\n"
        "  eu-west-1:\n"
        "    pair: us-east-1\n"          # line 3: crosses EU -> US
        "  us-east-1:\n"
        "    targets: [us-west-2, atlantis-1]\n"  # line 5: unknown target
        "  mars-1: {}\n"                  # line 6: unknown region
        "  us-west-2:\n"
        "    pair: us-west-2\n"          # line 8: itself
    )
    dr, issues = load_dr_config(path, REGION_MAP)
    assert dr is None
    found = {(i.keypath, i.line) for i in issues}
    assert found == {(("regions", "eu-west-1", "pair"), 3), (("regions", "us-east-1", "targets", 1), 5),
                     (("regions", "mars-1"), 6), (("regions", "us-west-2", "pair"), 8)}
    crossing = next(i for i in issues if i.keypath == ("regions", "eu-west-1", "pair"))
    assert crossing.file == path and "never crosses a jurisdiction" in crossing.message


def test_a_misspelt_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "dr_config.yaml"
    path.write_text("regions:\n  eu-west-1:\n    piar: eu-central-1\n")
    _, issues = load_dr_config(path, REGION_MAP)
    assert [(i.keypath, i.line) for i in issues] == [(("regions", "eu-west-1", "piar"), 3)]


def test_check_config_rejects_a_bad_dr_config_and_a_minority_quorum(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    dr = tmp_path / "bad_dr.yaml"
    dr.write_text("regions:\n  eu-central-1:\n    pair: ca-central-1\n")
    configs = write_federation(tmp_path, list(REGION_MAP.regions), "nats://127.0.0.1:4222",
                               patch={"failover": {"dr_config": str(dr), "quorum": 3}})
    assert main(["--lang", "en", "check-config", str(configs["eu-west-1"])]) == 2
    err = capsys.readouterr().err
    assert f"{dr}:3: regions.eu-central-1.pair:" in err
    assert "quorum 3 is below a strict majority of the 7 configured regions (4)" in err
    assert f"{configs['eu-west-1']}:" in err and "failover.quorum" in err


def test_a_missing_dr_config_is_fine_unless_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    configs = write_federation(tmp_path, ["eu-west-1", "eu-central-1"], "nats://127.0.0.1:4222")
    assert main(["check-config", str(configs["eu-west-1"])]) == 0
    data = yaml.safe_load(configs["eu-west-1"].read_text())
    data["failover"] = {"dr_config": "nowhere.yaml"}
    configs["eu-west-1"].write_text(yaml.safe_dump(data))
    assert main(["check-config", str(configs["eu-west-1"])]) == 2
    assert "nowhere.yaml: file not found" in capsys.readouterr().err


def test_the_default_dr_config_is_the_one_beside_the_config(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    configs = write_federation(tmp_path, ["eu-west-1", "eu-central-1"], "nats://127.0.0.1:4222")
    beside = configs["eu-west-1"].parent / "dr_config.yaml"
    beside.write_text("regions:\n  eu-west-1:\n    pair: us-east-1\n")
    monkeypatch.chdir(tmp_path)  # not where the file is: the config's directory counts, not the cwd
    assert main(["check-config", str(configs["eu-west-1"])]) == 2
    assert f"{beside}:3: regions.eu-west-1.pair:" in capsys.readouterr().err


def test_the_pair_then_the_list_then_the_lowest_rtt() -> None:
    dr = DRConfig(regions={"us-east-1": DRTargets(pair="us-west-2")})
    everyone = lambda r: True  # noqa: E731
    assert choose_target("us-east-1", REGION_MAP, dr, everyone, {}).tier == "pair"
    eu = DRConfig(regions={"eu-west-1": DRTargets(targets=["eu-central-1"])})
    assert choose_target("eu-west-1", REGION_MAP, eu, everyone, {}).tier == "list"
    rtt_only = DRConfig()
    choice = choose_target("eu-west-1", REGION_MAP, rtt_only, everyone, {"eu-central-1": 12.0})
    assert (choice.target, choice.tier) == ("eu-central-1", "rtt")
    assert choose_target("us-east-1", REGION_MAP, dr, lambda r: r != "us-west-2", {}).target is None
    assert choose_target("eu-west-1", REGION_MAP, DRConfig(rtt_fallback=False), everyone, {}).target is None


JURISDICTIONS = ["EU", "US", "CA"]


@st.composite
def worlds(draw: st.DrawFn) -> tuple[RegionMap, DRConfig, str, set[str], dict[str, float | None]]:
    names = draw(st.lists(st.sampled_from([f"r{i}" for i in range(9)]), min_size=1, max_size=9, unique=True))
    regions = {n: {"location": n, "coordinates": {"lat": 0, "lon": 0},
                   "jurisdiction": draw(st.sampled_from(JURISDICTIONS)), "endpoint": f"https://{n}.example",
                   "capacity": 1} for n in names}
    region_map = RegionMap.model_validate({"regions": regions})
    # Deliberately unchecked DR entries: even a file that slipped past validation must not leak.
    dr = DRConfig(rtt_fallback=draw(st.booleans()), regions={
        n: DRTargets(pair=draw(st.none() | st.sampled_from(names)),
                     targets=draw(st.lists(st.sampled_from(names), max_size=3)))
        for n in names if draw(st.booleans())})
    failed = draw(st.sampled_from(names))
    eligible = set(draw(st.lists(st.sampled_from(names), max_size=len(names), unique=True)))
    rtt = {n: draw(st.none() | st.floats(0, 500)) for n in names}
    return region_map, dr, failed, eligible, rtt


@settings(max_examples=300, deadline=None)
@given(worlds())
def test_a_target_is_never_outside_the_jurisdiction_nor_ineligible(world: tuple) -> None:
    region_map, dr, failed, eligible, rtt = world
    choice = choose_target(failed, region_map, dr, lambda r: r in eligible, rtt)
    home = region_map.regions[failed].jurisdiction
    candidates = {n for n, r in region_map.regions.items() if r.jurisdiction == home and n != failed and n in eligible}
    if choice.target is None:
        # Nothing was passed over: no candidate at all, or the fallback is off and the list is exhausted.
        assert not candidates or not dr.rtt_fallback
        assert not candidates & set(dr.order(failed))
    else:
        assert choice.target in candidates


def test_meshd_init_copies_the_dr_config_and_the_result_checks_out(tmp_path: Path) -> None:
    out = tmp_path / "fed"
    assert main(["init", "--federation", "prod", "--regions", str(ROOT / "etc" / "region_map.yaml"),
                 "--out", str(out)]) == 0
    assert (out / "dr_config.yaml").read_text() == (ROOT / "etc" / "dr_config.yaml").read_text()
    assert main(["check-config", str(out / "eu-west-1.yaml")]) == 0


def test_min_requesters_is_checked_only_when_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The default two-person rule is no reason to refuse a one-region federation (a laptop, a test).
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    alone = write_federation(tmp_path / "one", ["eu-west-1"], "nats://127.0.0.1:4222")
    assert main(["--lang", "en", "check-config", str(alone["eu-west-1"])]) == 0
    pair = write_federation(tmp_path / "two", ["eu-west-1", "eu-central-1"], "nats://127.0.0.1:4222",
                            patch={"failover": {"manual": {"min_requesters": 3}}})
    capsys.readouterr()
    assert main(["--lang", "en", "check-config", str(pair["eu-west-1"])]) == 2
    err = capsys.readouterr().err
    assert "failover.manual.min_requesters" in err and "more than the 2 configured regions" in err
