"""A partitioned region: its own rows say up, a quorum of peers saw it dead; the quorum wins, a lone peer does not."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshd.testing import running_daemons, write_federation
from meshd_plugins.sla import Sample, SampleStore, merge, summarize
from meshd_plugins.sla.summary import condemned, quorum_of

STEP = 10_000
MIN = 60_000
T0 = int(datetime(2026, 10, 5, tzinfo=UTC).timestamp() * 1000)
A, B, C = "eu-west-1", "eu-central-1", "us-east-1"


def own_rows() -> list[Sample]:
    """Ten minutes of A measuring itself fine, a 50 ms check per row."""
    from meshd_plugins.sla import Histogram

    hist = Histogram()
    hist.add(50.0)
    return [Sample(A, T0 + i * STEP, STEP, float(STEP), 1, hist.dumps()) for i in range(10 * MIN // STEP)]


def dead_rows(start_min: int, end_min: int) -> list[Sample]:
    return [Sample(A, t, STEP, 0.0, 0, b"", "dead") for t in range(T0 + start_min * MIN, T0 + end_min * MIN, STEP)]


# B and C both saw A dead over minutes 2-4 (a quorum of 3 regions is 2), B alone over minutes 6-7.
ROWS = {A: own_rows(), B: dead_rows(2, 4) + dead_rows(6, 7), C: dead_rows(2, 4)}


def test_only_time_a_quorum_saw_dead_is_condemned() -> None:
    answers = [summarize(rows) for rows in ROWS.values()]
    assert quorum_of(3) == 2 and quorum_of(7) == 4
    assert condemned(A, answers, 2) == [(T0 + 2 * MIN, T0 + 4 * MIN)]
    assert condemned(A, answers, 3) == []


def test_the_quorum_overrules_the_regions_own_rows() -> None:
    answers = [summarize(rows) for rows in ROWS.values()]
    before = merge(A, answers)
    assert before.availability == 1.0  # the old rule: its own rows win
    overruled = summarize([r for r in ROWS[A] if T0 + 2 * MIN <= r.t_ms < T0 + 4 * MIN])[A]["probes"]
    after = merge(A, answers, quorum=2, overruled=overruled)
    assert after.availability == pytest.approx(8 / 10)
    assert (after.overruled_ms, after.covered_ms, after.checks) == (2 * MIN, 10 * MIN, 48)
    assert after.p95_ms == before.p95_ms


@pytest.mark.anyio
@pytest.mark.nats
async def test_meshd_sla_counts_a_partitioned_region_down(tmp_path: Path, nats_server: Any) -> None:
    configs = write_federation(tmp_path, [A, B, C], nats_server.url)
    for region, rows in ROWS.items():
        history = tmp_path / f"{region}.sqlite"
        store = SampleStore(history)
        store.add(rows)
        store.close()
        data = yaml.safe_load(configs[region].read_text())
        # The rows are from October 2026, older than the default 35 days of full resolution: the recorder's
        # first fold (at its first 10 s boundary) would turn them into 5-minute rows under the query.
        data["sla"] = {"history": str(history), "full_resolution": "3650d"}
        data.setdefault("plugins", {})["disabled"] = ["health", "membership", "failover"]  # nothing recorded live
        configs[region].write_text(yaml.safe_dump(data))
    async with running_daemons(configs) as daemons:
        doc = await daemons[B].hooks.pm.get_plugin("sla").runtime.federation("2026-10")
    assert doc["complete"], doc["missing"]
    a = doc["regions"][A]
    assert a["availability"] == pytest.approx(8 / 10) and a["overruled_ms"] == 2 * MIN
    assert a["down_seen_by_peers_ms"] == 2 * MIN
