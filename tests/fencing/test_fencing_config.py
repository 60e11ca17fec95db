"""The ``fencing`` config section: defaults derived from the membership timing, errors naming file, key and line."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from meshd.config import ConfigError
from meshd.plugins import Hooks
from meshd.testing import BUILTIN_PLUGINS, write_federation
from meshd_plugins.fencing.config import resolve

REGIONS = ["eu-west-1", "eu-central-1", "us-east-1"]
OTHERS = [p for p in BUILTIN_PLUGINS if p not in ("fencing", "membership")]


def load(tmp_path: Path, patch: dict[str, Any] | None = None, blocked: list[str] = OTHERS) -> Any:
    tmp_path.mkdir(parents=True, exist_ok=True)
    configs = write_federation(tmp_path, REGIONS, "nats://127.0.0.1:4222", patch=patch)
    return Hooks.load(blocked=blocked).load_config(configs["eu-west-1"])


def test_after_defaults_to_the_lan_failover_decision_time(tmp_path: Path) -> None:
    timing = resolve(load(tmp_path))
    # lan: suspicion_mult 2 x max(1, log10 3) x probe_interval 0.5s; settle = rejoin_grace 3s
    assert timing is not None and timing.after == pytest.approx(1.0) and timing.after_source == "membership"
    assert timing.settle == 3.0


def test_after_follows_the_membership_profile_and_overrides(tmp_path: Path) -> None:
    wan = resolve(load(tmp_path / "wan", {"membership": {"profile": "wan"}}))
    assert wan is not None and wan.after == pytest.approx(8.0) and wan.settle == 15.0
    tuned = resolve(load(tmp_path / "tuned", {"membership": {"probe_interval": "1s", "probe_timeout": "400ms",
                                                             "suspicion_mult": 3}}))
    assert tuned is not None and tuned.after == pytest.approx(3.0)


def test_seven_regions_keep_the_log_factor_at_one(tmp_path: Path) -> None:
    configs = write_federation(tmp_path, ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ca-central-1",
                                          "me-south-1", "ap-southeast-1"], "nats://127.0.0.1:4222",
                               patch={"membership": {"suspicion_mult": 20}})
    timing = resolve(Hooks.load(blocked=OTHERS).load_config(configs["eu-west-1"]))
    # max(1, log10 7) = 1: the factor only stretches the time beyond ten regions.
    assert math.log10(7) < 1 and timing is not None and timing.after == pytest.approx(20 * 0.5)


def test_written_values_win(tmp_path: Path) -> None:
    config = load(tmp_path, {"fencing": {"after": "1500ms", "settle": "10s", "alerts": False}})
    timing = resolve(config)
    assert timing is not None and (timing.after, timing.settle, timing.after_source) == (1.5, 10.0, "config")
    assert config.plugin("fencing").alerts is False


def test_without_membership_there_is_nothing_to_derive_from(tmp_path: Path) -> None:
    config = load(tmp_path, blocked=OTHERS + ["membership"])
    assert resolve(config) is None
    written = resolve(load(tmp_path / "w", {"fencing": {"after": "4s"}}, blocked=OTHERS + ["membership"]))
    assert written is not None and (written.after, written.settle) == (4.0, 0.0)


@pytest.mark.parametrize("section, key, words", [
    ({"after": "0s"}, "fencing.after", "greater than 0"),
    ({"after": "soon"}, "fencing.after", "not a duration"),
    ({"settle": -1}, "fencing.settle", "negative"),
    ({"enabled": "perhaps"}, "fencing.enabled", "true or false"),
    ({"afterr": "2s"}, "fencing.afterr", "unknown key"),
])
def test_bad_values_name_file_line_and_key(tmp_path: Path, section: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {"fencing": section})
    [issue] = [str(i) for i in info.value.issues]
    assert "eu-west-1.yaml:" in issue and f": {key}: " in issue and words in issue, issue
    line = issue.split("eu-west-1.yaml:", 1)[1].split(":", 1)[0]
    assert line.isdigit(), issue
