"""region_pipeline.yaml: the sample checks out; every mistake is named by file, key and line, exit 2."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from meshd.cli import main
from meshd.config import RegionMap, load_model_file
from meshd.samples import sample_file
from meshd.testing import write_federation
from meshd_plugins.deploy import check_steps, load_pipeline

REGIONS = ["eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ca-central-1", "me-south-1", "ap-southeast-1"]
PAIRS = [("us-east-1", "us-west-2"), ("eu-west-1", "eu-central-1")]


def region_map() -> RegionMap:
    return load_model_file(sample_file("region_map.yaml"), RegionMap)


def line_of(path: Path, needle: str) -> int:
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in {path}")


def driver() -> dict[str, str]:
    return {"kind": "haproxy", "socket": "/run/haproxy.sock", "backend": "api"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "region_pipeline.yaml"
    path.write_text(text)
    return path


def test_the_sample_checks_out() -> None:
    pipeline, issues = load_pipeline(sample_file("region_pipeline.yaml"), region_map(), PAIRS)
    assert issues == []
    assert pipeline is not None
    plan = pipeline.plan("api")
    assert plan.steps == [5, 10, 25, 50, 100]
    assert plan.analysis.min_success_rate == 99 and plan.analysis.max_latency_ms == 500
    assert plan.regions()[0] == "ca-central-1"
    assert [s.gate for s in plan.stages] == ["auto", "auto", "manual", "auto"]
    assert pipeline.frozen(datetime(2026, 12, 24, 12, tzinfo=UTC)) == "year-end"
    assert pipeline.frozen(datetime(2026, 11, 24, 12, tzinfo=UTC)) is None


@pytest.mark.parametrize(("steps", "why"), [
    ([5, 10, 10, 100], "must increase"),
    ([5, 50, 25, 100], "must increase"),
    ([5, 10, 150], "above 100"),
    ([5, 10, 50], "last step must be 100"),
    ([], "at least one"),
])
def test_bad_weight_ladders(steps: list[int], why: str) -> None:
    assert why in (check_steps(steps) or "")


def test_a_good_weight_ladder() -> None:
    assert check_steps([5, 10, 25, 50, 100]) is None
    assert check_steps([100]) is None


def test_an_unknown_region_is_named_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, yaml.safe_dump({"services": {"api": {
        "stages": [{"regions": ["eu-west-1"]}, {"regions": ["mars-north-1"]}],
        "drivers": {"eu-west-1": driver(), "mars-north-1": driver()}}}}, sort_keys=False))
    pipeline, issues = load_pipeline(path, region_map(), PAIRS)
    assert pipeline is None
    text = "\n".join(str(i) for i in issues)
    assert f"{path}:{line_of(path, '- mars-north-1')}: services.api.stages[1].regions[0]" in text
    assert "'mars-north-1' is not in the region map" in text


def test_a_stage_with_both_regions_of_a_dr_pair_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, yaml.safe_dump({"services": {"api": {
        "stages": [{"regions": ["ca-central-1"]}, {"regions": ["us-east-1", "us-west-2"]}],
        "drivers": {r: driver() for r in ("ca-central-1", "us-east-1", "us-west-2")}}}}, sort_keys=False))
    _, issues = load_pipeline(path, region_map(), PAIRS)
    assert len(issues) == 1
    assert issues[0].keypath == ("services", "api", "stages", 1, "regions")
    assert issues[0].line == line_of(path, "- us-east-1") - 1
    assert "us-east-1 and us-west-2 are a DR pair" in issues[0].message


def test_steps_not_increasing_or_above_100_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, "defaults:\n  steps: [5, 25, 10, 100]\nservices:\n  api:\n    steps: [5, 120]\n"
                           "    stages: [{regions: [eu-west-1]}]\n"
                           "    drivers: {eu-west-1: {kind: command, argv: [/bin/true]}}\n")
    _, issues = load_pipeline(path, region_map(), PAIRS)
    by_key = {i.keypath: i for i in issues}
    assert by_key[("defaults", "steps")].line == 2
    assert "10 comes after 25" in by_key[("defaults", "steps")].message
    assert by_key[("services", "api", "steps")].line == 5
    assert "above 100" in by_key[("services", "api", "steps")].message


def test_a_region_without_a_driver_and_a_driver_without_a_stage(tmp_path: Path) -> None:
    path = write(tmp_path, yaml.safe_dump({"services": {"api": {
        "stages": [{"regions": ["eu-west-1"]}], "drivers": {"us-east-1": driver()}}}}, sort_keys=False))
    _, issues = load_pipeline(path, region_map(), PAIRS)
    messages = sorted(i.message for i in issues)
    assert messages == ["no driver for region 'eu-west-1' (add drivers.eu-west-1)",
                        "region 'us-east-1' is in no stage of api"]


def test_a_typo_in_a_key_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "defaults:\n  bake: 1m\n  analysis:\n    min_sucess_rate: 99\n")
    _, issues = load_pipeline(path, region_map(), PAIRS)
    assert [(i.line, i.keypath) for i in issues] == [(4, ("defaults", "analysis", "min_sucess_rate"))]


def test_check_config_reports_the_pipeline_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    configs = write_federation(tmp_path, ["us-east-1", "us-west-2", "ca-central-1"], "nats://127.0.0.1:4222")
    config = configs["us-east-1"]
    (config.parent / "dr_config.yaml").write_text(yaml.safe_dump({"regions": {
        "us-east-1": {"pair": "us-west-2"}, "us-west-2": {"pair": "us-east-1"}}}))
    pipeline = config.parent / "region_pipeline.yaml"
    pipeline.write_text(yaml.safe_dump({"services": {"api": {
        "stages": [{"regions": ["us-east-1", "us-west-2"]}],
        "drivers": {"us-east-1": driver(), "us-west-2": {"kind": "haproxy", "backend": "api"}}}}}, sort_keys=False))
    assert main(["check-config", str(config)]) == 2
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text
    assert f"{pipeline}:" in text and "are a DR pair" in text
    pipeline.write_text(yaml.safe_dump({"services": {"api": {
        "stages": [{"regions": ["us-east-1"]}, {"regions": ["us-west-2"]}],
        "drivers": {"us-east-1": driver(), "us-west-2": {"kind": "haproxy", "backend": "api"}}}}}, sort_keys=False))
    assert main(["check-config", str(config)]) == 2
    text = "".join(capsys.readouterr())
    assert "services.api.drivers.us-west-2" in text and "socket" in text
    pipeline.write_text(yaml.safe_dump({"services": {"api": {
        "stages": [{"regions": ["us-east-1"]}, {"regions": ["us-west-2"]}],
        "drivers": {"us-east-1": driver(), "us-west-2": {"kind": "teleport"}}}}}, sort_keys=False))
    assert main(["check-config", str(config)]) == 2
    assert "no plugin provides a deploy driver of kind 'teleport'" in "".join(capsys.readouterr())
    pipeline.write_text(yaml.safe_dump({"services": {"api": {
        "stages": [{"regions": ["us-east-1"]}, {"regions": ["us-west-2"]}],
        "drivers": {"us-east-1": driver(), "us-west-2": driver()}}}}, sort_keys=False))
    assert main(["check-config", str(config)]) == 0


def test_a_prometheus_source_needs_its_queries_and_a_url(tmp_path: Path) -> None:
    path = write(tmp_path, "services:\n  api:\n    stages: [{regions: [eu-west-1]}]\n"
                           "    drivers: {eu-west-1: {kind: command, argv: [/bin/true]}}\n"
                           "    analysis:\n      source: prometheus\n")
    _, issues = load_pipeline(path, region_map(), PAIRS)
    assert [(i.line, i.keypath) for i in issues] == [(6, ("services", "api", "analysis", "source"))]
    assert "no analysis.prometheus (url, success_rate and latency_ms queries)" in issues[0].message
    path = write(tmp_path, "defaults:\n  analysis:\n    source: prometheus\n    prometheus:\n"
                           "      url: prometheus:9090\n      success_rate: up\n      latency_ms: up\n")
    _, issues = load_pipeline(path, region_map(), PAIRS)
    assert [(i.line, i.keypath) for i in issues] == [(5, ("defaults", "analysis", "prometheus", "url"))]

