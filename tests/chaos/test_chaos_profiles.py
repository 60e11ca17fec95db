"""The chaos runner's network profiles and --latency ranges (no processes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from chaos_runner import IN_FLIGHT, ChaosRun, parse_latency


def test_latency_ranges_read_like_durations() -> None:
    assert parse_latency("80-150ms") == (0.08, 0.15)
    assert parse_latency("80ms-150ms") == (0.08, 0.15)
    assert parse_latency("100ms") == (0.1, 0.1)
    assert parse_latency("0.05-0.1s") == (0.05, 0.1)
    for bad in ("150-80ms", "fast", "80-", "-80ms"):
        with pytest.raises(ValueError, match="latency"):
            parse_latency(bad)


def test_the_wan_profile_adds_latency_wan_timing_and_longer_budgets(tmp_path: Path) -> None:
    lan = ChaosRun(tmp_path / "lan", seed=1)
    wan = ChaosRun(tmp_path / "wan", seed=1, profile="wan")
    assert lan.latency is None and lan.lease == 1.5 and lan.slack == 1.5 + IN_FLIGHT
    assert wan.latency == (0.08, 0.15)
    assert wan.daemon_config()["membership"] == {"profile": "wan"}
    assert wan.detect_budget > lan.detect_budget and wan.profile.settle_timeout > lan.profile.settle_timeout
    # The daemons' lease follows the wan profile (3 renewals of a 2 s probe interval), and it is
    # counted from a vote's arrival: two proxy crossings after its renewal at worst.
    assert wan.lease == 6.0 and wan.slack == pytest.approx(6.0 + IN_FLIGHT + 0.3)
    assert wan.report.summary()["latency_ms"] == [80, 150] and wan.report.summary()["profile"] == "wan"
    # An explicit range and budget win over the profile's.
    custom = ChaosRun(tmp_path / "custom", seed=1, profile="wan", latency=(0.2, 0.3), detect_budget=90.0)
    assert (custom.latency, custom.detect_budget) == ((0.2, 0.3), 90.0)
    fed = custom._federation(tmp_path / "fed")
    assert fed.latency == (0.2, 0.3) and fed.use_proxies


def test_an_unknown_profile_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'moon'.*lan, wan"):
        ChaosRun(tmp_path, seed=1, profile="moon")
