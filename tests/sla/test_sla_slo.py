"""slo.yaml: the sample file is valid, objectives resolve by tenant > region > plan, bad files name file:line, exit 2."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from meshd.cli import main
from meshd.config import ConfigError
from meshd.testing import write_federation
from meshd_plugins.sla import load_slo

ETC = Path(__file__).resolve().parents[2] / "etc"
REGIONS = ["eu-west-1", "us-east-1"]


def test_the_sample_file_loads_with_the_seed_objectives() -> None:
    slo = load_slo(ETC / "slo.yaml", plans=["starter", "professional", "business", "enterprise"],
                   regions=REGIONS, tenants=[])
    assert slo.objective("starter").availability == Decimal("99.0")
    assert slo.objective("professional").latency_p95_ms == Decimal(500)
    assert slo.objective("enterprise").availability == Decimal("99.99")
    assert [w.name for w in slo.windows] == ["28d", "30d", "month"]


def test_tenant_beats_region_beats_plan(tmp_path: Path) -> None:
    path = tmp_path / "slo.yaml"
    path.write_text("plans:\n  starter:\n    objectives: {availability: 99.0, latency_p95_ms: 1000}\n"
                    "regions:\n  eu-west-1:\n    objectives: {latency_p95_ms: 800}\n"
                    "tenants:\n  acme:\n    objectives: {availability: 99.5}\n")
    slo = load_slo(path)
    assert slo.objective("starter", "eu-west-1", "acme").to_json() == {"availability": "99.5", "latency_p95_ms": "800"}
    assert slo.objective("starter", "us-east-1").to_json() == {"availability": "99.0", "latency_p95_ms": "1000"}


BAD = """\
windows:
  - rolling: 30d
  - calendar: month
  - rolling: 720h
plans:
  starter:
    objectives: {availability: 99.0, error_rate: 1}
  platinum:
    objectives: {availability: 100}
  enterprise:
    objectives:
      latency_p95_ms: -5
regions:
  mars-north-1:
    objectives: {availability: 99.9}
"""


def config_with_slo(tmp_path: Path, text: str) -> Path:
    configs = write_federation(tmp_path, REGIONS, "nats://127.0.0.1:4222")
    config = configs["eu-west-1"]
    (config.parent / "slo.yaml").write_text(text)
    return config


def test_a_bad_slo_file_names_each_problem_with_file_line_and_exits_2(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    config = config_with_slo(tmp_path, BAD)
    assert main(["--lang", "en", "check-config", str(config)]) == 2
    err = capsys.readouterr().err
    slo = config.parent / "slo.yaml"
    assert f"{slo}:4: windows[2]: window 30d overlaps windows[0], the same period" in err
    assert f"{slo}:7: plans.starter.objectives.error_rate: unknown SLI 'error_rate'" in err
    assert f"{slo}:8: plans.platinum: unknown plan 'platinum'" in err
    assert f"{slo}:9: plans.platinum.objectives.availability: availability objective 100 is out of range" in err
    assert f"{slo}:12: plans.enterprise.objectives.latency_p95_ms: latency objective -5 is out of range" in err
    assert f"{slo}:14: regions.mars-north-1: unknown region 'mars-north-1'" in err


def test_the_sample_file_passes_check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (ETC / "slo.yaml").read_text()
    data = yaml.safe_load(text)
    del data["plans"]["business"]  # business is a billing-matrix plan; without billing only the builtin ones are known
    config = config_with_slo(tmp_path, yaml.safe_dump(data))
    assert main(["--lang", "en", "check-config", str(config)]) == 0, capsys.readouterr().err


def test_a_syntax_error_is_a_config_error_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "slo.yaml"
    path.write_text("plans:\n  starter: [\n")
    with pytest.raises(ConfigError) as exc:
        load_slo(path)
    assert str(path) in str(exc.value) and ":3" in str(exc.value)
