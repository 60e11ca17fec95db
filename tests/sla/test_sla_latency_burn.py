"""The p95 objective's budget: checks slower than the objective, 5 % allowed, under the same burn-rate rules."""

from __future__ import annotations

import logging
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from meshd.testing import running_daemons, write_federation
from meshd_plugins.sla import Histogram, Sample
from meshd_plugins.sla.burn import HOUR_MS, MIN_MS, RULES, Transition
from meshd_plugins.sla.latencyburn import LatencyBurn, within

STEP = 10_000
DAY = 24 * HOUR_MS


def checks(fast: int, slow: int) -> Histogram:
    hist = Histogram()
    hist.add(100.0, fast)
    hist.add(2000.0, slow)
    return hist


def replay(*phases: tuple[int, Histogram]) -> tuple[LatencyBurn, list[Transition]]:
    burn = LatencyBurn("eu-west-1", Decimal(500), RULES)
    changes: list[Transition] = []
    t = 0
    for duration, hist in phases:
        for _ in range(duration // STEP):
            changes += burn.add(t, STEP, hist)
            t += STEP
    return burn, changes


def test_within_counts_checks_at_or_under_the_objective() -> None:
    assert within(checks(7, 3), 500.0) == (10, 7)
    assert within(checks(7, 3), 2000.0) == (10, 10)


def test_all_checks_slow_pages_once_the_hour_spent_its_share_and_resolves() -> None:
    burn, changes = replay((3 * DAY, checks(10, 0)), (90 * MIN_MS, checks(0, 10)), (30 * MIN_MS, checks(10, 0)))
    start = 3 * DAY
    page = [(c.firing, c.at_ms - start) for c in changes if c.rule.name == "page_fast"]
    # 20x burn (every check over, 5 % allowed): the hour reaches 14.4x when 72 % of it was slow, at 43.2 min.
    assert page[0] == (True, pytest.approx(43.2 * MIN_MS, abs=STEP))
    # After it stops, the 5-minute window drops under 14.4x once 28 % of it is fast again: 1.4 min.
    assert page[1] == (False, pytest.approx(90 * MIN_MS + 1.4 * MIN_MS, abs=STEP))
    assert len(page) == 2 and burn.engine.incidents[0].ttd_ms == page[0][1]


def test_a_slow_tenth_of_checks_never_pages_though_every_samples_p95_is_over() -> None:
    hist = checks(9, 1)
    assert hist.quantile(0.95) == pytest.approx(2000.0, rel=0.03)  # each sample, alone, misses the p95 objective
    _, changes = replay((3 * DAY, checks(10, 0)), (6 * HOUR_MS, hist))
    assert not [c for c in changes if c.rule.severity == "page"]
    # and 4 % slow (0.8x) never fires anything in four days.
    _, changes = replay((4 * DAY, checks(24, 1)))
    assert changes == []


@pytest.mark.anyio
@pytest.mark.nats
async def test_the_daemon_raises_and_reports_a_latency_burn(tmp_path: Path, nats_server: Any,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    configs = write_federation(tmp_path, ["eu-west-1"], nats_server.url)
    async with running_daemons(configs, blocked=["health", "membership", "failover"]) as daemons:
        runtime = daemons["eu-west-1"].hooks.pm.get_plugin("sla").runtime
        t0 = int(time.time() * 1000) - 2 * HOUR_MS
        slow = checks(0, 10).dumps()
        with caplog.at_level(logging.WARNING, logger="meshd.eu-west-1.sla"):
            for i in range(HOUR_MS // STEP):  # an hour of every check at 2 s: over every plan's objective
                await runtime.judge([Sample("eu-west-1", t0 + i * STEP, STEP, float(STEP), 10, slow)])
        status = runtime.status()
    assert "page_fast" in status["latency_burn"]["starter"]["firing"]
    assert status["burn"]["starter"]["firing"] == []  # available all along: no availability alert
    assert any("SLO latency burn page_fast for plan starter: firing" in r.getMessage() for r in caplog.records)
