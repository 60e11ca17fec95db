"""The ``routing`` config section: defaults, RTT tables, and errors that name file, key and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from meshd.config import ConfigError
from meshd.plugins import Hooks
from meshd.testing import BUILTIN_PLUGINS, write_federation

OTHERS = [p for p in BUILTIN_PLUGINS if p != "routing"]


def load(tmp_path: Path, routing: dict[str, Any] | None = None) -> Any:
    configs = write_federation(tmp_path, ["eu-west-1", "eu-central-1", "us-east-1"], "nats://127.0.0.1:4222",
                               patch={"routing": routing} if routing is not None else None)
    return Hooks.load(blocked=OTHERS).load_config(configs["eu-west-1"])


def issues(tmp_path: Path, routing: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, routing)
    return [str(i) for i in info.value.issues]


def test_defaults_without_a_section(tmp_path: Path) -> None:
    section = load(tmp_path).plugin("routing")
    assert section.latency_tolerance_ms == 10.0 and not section.carbon_aware and section.service
    assert section.settings().sticky_ttl == 1800.0


def test_inline_table_durations_and_places(tmp_path: Path) -> None:
    section = load(tmp_path, {"rtt": {"FR": {"eu-west-1": 15}}, "sticky_ttl": "5m",
                              "locations": {"hq": {"lat": 48.1, "lon": 11.6}}}).plugin("routing")
    assert section.sticky_ttl == 300.0 and section.places() == {"hq": (48.1, 11.6)}


def test_rtt_file_merges_under_the_inline_table(tmp_path: Path) -> None:
    from meshd_plugins.routing.config import rtt_table

    (tmp_path / "rtt.yaml").write_text("rtt:\n  FR:\n    eu-west-1: 15\n    eu-central-1: 9\n")
    section = load(tmp_path, {"rtt_file": str(tmp_path / "rtt.yaml"),
                              "rtt": {"FR": {"eu-west-1": 11}}}).plugin("routing")
    assert rtt_table(section) == {"FR": {"eu-west-1": 11.0, "eu-central-1": 9.0}}


def test_missing_rtt_file_names_the_key_and_line(tmp_path: Path) -> None:
    found = issues(tmp_path, {"rtt_file": "nowhere.yaml"})
    assert len(found) == 1
    assert "eu-west-1.yaml:" in found[0] and "routing.rtt_file" in found[0] and "file not found" in found[0]


def test_bad_rows_and_columns_in_the_rtt_file_name_file_key_and_line(tmp_path: Path) -> None:
    (tmp_path / "rtt.yaml").write_text("rtt:\n  FR:\n    eu-west-1: 15\n    mars-1: 9\n  Atlantis:\n    eu-west-1: 3\n")
    found = issues(tmp_path, {"rtt_file": str(tmp_path / "rtt.yaml")})
    assert any("rtt.yaml:4: rtt.FR.mars-1" in i and "not a region" in i for i in found), found
    assert any("rtt.yaml:5: rtt.Atlantis" in i for i in found), found


def test_invalid_values_and_unknown_keys_are_reported_with_lines(tmp_path: Path) -> None:
    found = issues(tmp_path, {"rtt": {"FR": {"eu-west-1": -1}}, "carbon_awere": True})
    assert any("routing.rtt.FR.eu-west-1" in i and "greater than 0" in i for i in found), found
    assert any("routing.carbon_awere" in i and "unknown key" in i for i in found), found
    found = issues(tmp_path, {"rtt": {"FR": {"mars-1": 3}}, "locations": {"eu-west-1": {"lat": 1, "lon": 2}}})
    assert any("routing.rtt.FR.mars-1" in i for i in found) and any("already a region" in i for i in found)
    assert all(":" in i.split(" ")[0] for i in found)  # every issue carries file:line


def test_unparseable_rtt_file(tmp_path: Path) -> None:
    (tmp_path / "rtt.yaml").write_text("rtt: [unclosed\n")
    found = issues(tmp_path, {"rtt_file": str(tmp_path / "rtt.yaml")})
    assert len(found) == 1 and "rtt.yaml" in found[0]


def test_the_sample_rtt_table_is_valid(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    configs = write_federation(tmp_path, list(yaml.safe_load((root / "etc" / "region_map.yaml").read_text())
                                              ["regions"]), "nats://127.0.0.1:4222",
                               patch={"routing": {"rtt_file": str(root / "etc" / "rtt_table.yaml")}})
    config = Hooks.load(blocked=OTHERS).load_config(configs["eu-west-1"])
    assert config.plugin("routing").rtt_file.name == "rtt_table.yaml"
