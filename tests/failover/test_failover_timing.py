"""The vote lease and its renewal follow the membership timing profile, and can be set outright."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from meshd.config import ConfigError
from meshd.plugins import Hooks
from meshd.testing import BUILTIN_PLUGINS, write_federation
from meshd_plugins.failover.config import vote_timing


def load(tmp_path: Path, patch: dict[str, Any], plugins: tuple[str, ...] = ("failover", "membership")) -> Any:
    tmp_path.mkdir()
    configs = write_federation(tmp_path, ["us-east-1", "us-west-2", "eu-west-1"], "nats://127.0.0.1:4222",
                               patch=patch)
    hooks = Hooks.load(blocked=[p for p in BUILTIN_PLUGINS if p not in plugins])
    return hooks.load_config(configs["us-east-1"])


def test_lan_keeps_the_half_second_renewal_and_wan_stretches_it(tmp_path: Path) -> None:
    assert vote_timing(load(tmp_path / "lan", {})) == (0.5, 1.5)
    assert vote_timing(load(tmp_path / "wan", {"membership": {"profile": "wan"}})) == (2.0, 6.0)
    # A probe interval set by hand moves the votes with it.
    assert vote_timing(load(tmp_path / "tuned", {"membership": {"profile": "wan", "probe_interval": "3s"}})) \
        == (3.0, 9.0)
    # Without the membership plugin, the lan anchor.
    assert vote_timing(load(tmp_path / "alone", {}, plugins=("failover",))) == (0.5, 1.5)


def test_failover_settings_override_the_profile(tmp_path: Path) -> None:
    config = load(tmp_path / "both", {"membership": {"profile": "wan"},
                                      "failover": {"rebroadcast": "1s", "lease": "5s"}})
    assert vote_timing(config) == (1.0, 5.0)
    config = load(tmp_path / "renew", {"membership": {"profile": "wan"}, "failover": {"rebroadcast": "1s"}})
    assert vote_timing(config) == (1.0, 3.0)


def test_a_lease_that_lapses_before_its_renewal_is_refused_with_file_key_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as bad:
        load(tmp_path / "short", {"membership": {"profile": "wan"}, "failover": {"lease": "2s"}})
    [issue] = bad.value.issues
    assert issue.keypath == ("failover", "lease") and issue.line
    assert "lease 2s" in str(bad.value) and "rebroadcast 2s" in str(bad.value)
