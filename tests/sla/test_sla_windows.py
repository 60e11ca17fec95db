"""The windows of slo.yaml drive what is judged: rolling 28 and 30 days and the calendar month, on a simulated clock."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshd import Translator
from meshd.testing import running_daemons, write_federation
from meshd_plugins.sla import Sample, SampleStore
from meshd_plugins.sla.burn import HOUR_MS, MIN_MS, BurnEngine, rules_for_period
from meshd_plugins.sla.cli import rows
from meshd_plugins.sla.slo import SloFile, Window

from .test_sla_burn import series

DAY = 24 * HOUR_MS
NOW = datetime(2026, 10, 15, tzinfo=UTC).timestamp()
NOW_MS = int(NOW * 1000)
REGION = "eu-west-1"
# Down hours, as hours before NOW: one 29 days back (in the 30-day window only), two in October (in every window).
DOWN = {29 * 24, 12 * 24, 12 * 24 - 1}


def test_window_bounds_on_a_simulated_clock() -> None:
    assert Window(rolling=28 * 86400.0).bounds(NOW) == (NOW_MS - 28 * DAY, NOW_MS)
    assert Window(calendar="month").bounds(NOW + 3600) == (int(datetime(2026, 10, 1, tzinfo=UTC).timestamp() * 1000),
                                                           NOW_MS + HOUR_MS)
    assert Window(calendar="month").length_ms == 30 * DAY


def test_a_28_day_objective_pages_on_a_burn_a_30_day_one_absorbs() -> None:
    # 14x for 70 minutes spends 2.3 % of a 28-day budget in the last hour (page: 2 %), 2.2 % of a 30-day one (14.4x).
    recorded = series((3 * DAY, 1.0), (70 * MIN_MS, 1 - 0.014))
    fired = {}
    for days in (28, 30):
        engine = BurnEngine(REGION, Decimal("99.9"), rules_for_period(days * DAY))
        changes = [c for s in recorded for c in engine.add(s.t_ms, s.span_ms, s.up_ms)]
        fired[days] = sorted({c.rule.name for c in changes if c.firing})
    assert fired == {28: ["page_fast"], 30: []}
    assert [r.factor for r in rules_for_period(28 * DAY)] == pytest.approx([13.44, 5.6, 2.8, 14 / 15])


def record(path: Path) -> dict[str, float]:
    """40 days of hourly rows ending at NOW; the availability each window must show."""
    store = SampleStore(path)
    store.add([Sample(REGION, NOW_MS - h * HOUR_MS, HOUR_MS, 0.0 if h in DOWN else float(HOUR_MS), 360)
               for h in range(1, 40 * 24 + 1)])
    store.close()
    return {"28d": 1 - 2 / (28 * 24), "30d": 1 - 3 / (30 * 24), "month": 1 - 2 / (14 * 24)}


@pytest.mark.anyio
@pytest.mark.nats
async def test_each_plan_is_judged_over_its_own_windows(tmp_path: Path, nats_server: Any) -> None:
    history = tmp_path / "h.sqlite"
    expected = record(history)
    configs = write_federation(tmp_path, [REGION], nats_server.url, patch={"sla": {"history": str(history)}})
    (configs[REGION].parent / "slo.yaml").write_text(yaml.safe_dump({
        "windows": [{"rolling": "28d"}, {"rolling": "30d"}, {"calendar": "month"}],
        "plans": {"starter": {"objectives": {"availability": 99.0, "latency_p95_ms": 1000}},
                  "enterprise": {"objectives": {"availability": 99.99, "latency_p95_ms": 200},
                                 "windows": [{"calendar": "month"}]}}}, sort_keys=False))
    async with running_daemons(configs) as daemons:
        runtime = daemons[REGION].hooks.pm.get_plugin("sla").runtime
        doc = await runtime.federation(None, now_s=NOW)
        one = await runtime.federation("30d", now_s=NOW)
    assert list(doc["windows"]) == ["28d", "30d", "month"]
    got = {w: body["regions"][REGION]["availability"] for w, body in doc["windows"].items()}
    assert got == pytest.approx(expected)
    starter, enterprise = doc["plans"]["starter"], doc["plans"]["enterprise"]
    assert list(starter["windows"]) == ["28d", "30d", "month"] and starter["window"] == "28d"
    assert list(enterprise["windows"]) == ["month"] and enterprise["regions"] == enterprise["windows"]["month"]
    for w, achieved in expected.items():
        assert starter["windows"][w][REGION]["budget_left"] == pytest.approx(1 - (1 - achieved) / 0.01, abs=1e-6)
    assert enterprise["windows"]["month"][REGION]["availability_met"] is False
    # The first plan's burn engine spends a 28-day budget.
    assert runtime.engines["starter"].rules[0].factor == pytest.approx(13.44)

    # --period overrides: every plan over that one period.
    assert list(one["windows"]) == ["30d"] and one["regions"][REGION]["availability"] == pytest.approx(expected["30d"])
    assert list(one["plans"]["enterprise"]["windows"]) == ["30d"]

    # The table: one row per plan, window and region, each with its window's figure.
    _, table = rows(Translator("en"), doc)
    assert [(r[1], r[2], r[4]) for r in table] == [
        ("starter", "28d", f"{expected['28d'] * 100:.3f} %"), ("starter", "30d", f"{expected['30d'] * 100:.3f} %"),
        ("starter", "month", f"{expected['month'] * 100:.3f} %"),
        ("enterprise", "month", f"{expected['month'] * 100:.3f} % !")]


def test_a_plan_window_listed_twice_is_refused() -> None:
    from meshd_plugins.sla.slo import check_slo

    found: list[tuple[Any, str]] = []
    slo = SloFile.model_validate({"plans": {"starter": {"windows": [{"rolling": "30d"}, {"rolling": "720h"}]}}})
    check_slo(slo, lambda at, msg: found.append((at, msg)), plans=None, regions=None, tenants=None)
    assert found == [(("plans", "starter", "windows", 1), "window 30d overlaps windows[0], the same period: list it once")]
