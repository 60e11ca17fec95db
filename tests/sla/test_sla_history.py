"""The SLI history: histograms, the SQLite store, downsampling, merging the regions' rows, the recorder."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from meshd_plugins.sla import PRECISION, Histogram, Part, Recorder, Sample, SampleStore, merge, summarize, window_sli
from meshd_plugins.sla.summary import summarize_store

MIN = 60_000


def exact_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-int(q * 1000) * len(ordered) // 1000) - 1)]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_p95_is_within_the_documented_precision(seed: int) -> None:
    rng = random.Random(seed)
    values = [rng.lognormvariate(4, 1) for _ in range(5000)]
    h = Histogram()
    for v in values:
        h.add(v)
    got = h.quantile(0.95)
    want = exact_quantile(values, 0.95)
    assert got is not None
    assert abs(got - want) / want <= PRECISION + 1e-9


def test_histograms_merge_as_if_they_were_one() -> None:
    a, b, whole = Histogram(), Histogram(), Histogram()
    for i in range(1, 400):
        (a if i % 3 else b).add(i * 1.7)
        whole.add(i * 1.7)
    merged = Histogram.merged([a.dumps(), b.dumps(), b""])
    assert merged.counts == whole.counts
    assert Histogram.loads(whole.dumps()).quantile(0.5) == whole.quantile(0.5)
    assert Histogram().quantile(0.95) is None
    big = Histogram({3: 1, 900: 300, 901: 0})
    assert Histogram.loads(big.dumps()).counts == {3: 1, 900: 300}
    assert Sample.from_json(Sample("eu", 0, 10, 5.0, 1, big.dumps()).to_json()).histogram().counts == {3: 1, 900: 300}


def test_rows_survive_reopening_and_replace_by_key(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    store = SampleStore(path)
    store.add([Sample("eu", 0, 10_000, 10_000.0, 3), Sample("eu", 10_000, 10_000, 5_000.0, 2)])
    store.add([Sample("eu", 10_000, 10_000, 2_500.0, 4)])
    store.close()
    again = SampleStore(path)
    rows = again.samples(0, 10**12)
    assert again.totals(0, 10**12) == [("eu", "probes", 20_000, 12_500.0, 7)]  # the replaced row counts once
    assert [(r.t_ms, r.up_ms, r.checks) for r in rows] == [(0, 10_000.0, 3), (10_000, 2_500.0, 4)]
    assert again.regions() == ["eu"]


def test_downsampling_keeps_availability_and_p95_exact(tmp_path: Path) -> None:
    store = SampleStore(tmp_path / "h.sqlite")
    rng = random.Random(7)
    rows = []
    for i in range(3 * 30 + 7):  # 16 minutes and a bit of 10 s rows
        h = Histogram()
        for _ in range(4):
            h.add(rng.uniform(5, 900))
        rows.append(Sample("eu", i * 10_000, 10_000, rng.choice([10_000.0, 10_000.0, 0.0, 7_500.0]), 4, h.dumps()))
    rows.pop(33)  # a gap stays a gap: it must not be counted as up or down
    store.add(rows)
    before = window_sli(store.samples(0, 10**12))
    folded = store.downsample(before_ms=15 * MIN)
    after_rows = store.samples(0, 10**12)
    after = window_sli(after_rows)
    assert folded == 89  # the 90 rows of the first 15 minutes, less the gap
    assert len(after_rows) == 3 + (len(rows) - folded)
    assert after.availability == pytest.approx(before.availability)
    assert after.p95_ms == before.p95_ms
    assert after.covered_ms == before.covered_ms
    assert store.downsample(before_ms=15 * MIN) == 0  # idempotent
    store.downsample(before_ms=15 * MIN, drop_before_ms=5 * MIN)
    assert min(r.t_ms for r in store.samples(0, 10**12)) == 5 * MIN


def test_the_merge_takes_own_rows_then_the_failover_target_then_peers_seeing_it_dead() -> None:
    # eu measured itself for 0-30 s; then was dead (a peer says so) for 30-60 s, failed over to us from 50 s.
    eu_answer = summarize([Sample("eu", t, 10_000, 10_000.0, 2) for t in (0, 10_000, 20_000)])
    peer_answer = summarize([Sample("eu", t, 10_000, 0.0, 0, b"", "dead") for t in (20_000, 30_000, 40_000)]
                            + [Sample("eu", 50_000, 10_000, 8_000.0, 3, b"", "failover")])
    wire = [{r: {src: Part.from_json(p.to_json()) for src, p in by.items()} for r, by in a.items()}
            for a in (eu_answer, peer_answer)]
    merged = merge("eu", wire)
    assert merged.covered_ms == 60_000
    assert merged.down_seen_by_peers_ms == 20_000  # 20-30 s was measured by eu itself
    assert merged.served_by_target_ms == 10_000
    assert merged.availability == pytest.approx((30_000 + 8_000) / 60_000)
    # A region nobody heard from has no figure at all.
    assert merge("ap", wire).availability is None


def test_the_recorder_counts_the_time_each_result_stands_for() -> None:
    rec = Recorder("eu", 10_000, probes=["web"])
    rec.start_ms = 20_000
    # web: ok from 20.0 s, down from 22.5 s (request sent then), up again from 25.0 s; 50 ms answers.
    for ok, at_s in [(True, 20.05), (False, 22.55), (False, 24.05), (True, 25.05)]:
        rec.observe("web", ok, 50.0, at_s)
    rec.observe("disk", False, 1.0, 21.0, "disk")  # not an SLI probe
    assert rec.ignored == 1
    anything = Recorder("eu", 10_000)
    anything.observe("cpu", False, 1.0, 21.0, "cpu")  # a host probe is not an SLI by default
    anything.observe("db", True, 3.0, 21.0, "tcp")
    assert anything.ignored == 1 and anything.total == 1
    rec.member("us", "dead")
    rec.member("ap", "dead")
    rec.decision("ap", "failover", "eu")
    rows = {(r.region, r.source): r for r in rec.close_interval(20_000)}
    own = rows[("eu", "probes")]
    assert own.t_ms == 20_000 and own.checks == 4
    assert own.up_ms == pytest.approx(7_500.0)  # 2.5 s down out of 10 s
    assert own.histogram().total == 2  # a failed check has no latency to count
    assert rows[("us", "dead")].availability == 0.0
    assert ("ap", "dead") not in rows and rows[("ap", "failover")].up_ms == own.up_ms
    assert rec.ignored == 1
    # No check ends in the next interval: the last result (up) still stands for it.
    rows = {(r.region, r.source): r for r in rec.close_interval(30_000)}
    assert rows[("eu", "probes")].availability == 1.0 and rows[("eu", "probes")].checks == 0
    rec.decision("ap", "failback", None)
    assert {(r.region, r.source) for r in rec.close_interval(40_000)} == {("eu", "probes"), ("ap", "dead"),
                                                                          ("us", "dead")}
    rec.member("us", "alive")
    rec.member("ap", "alive")
    # A minute after its last result a probe stops counting: nothing measured is not "up".
    for t in range(50_000, 90_000, 10_000):
        rec.close_interval(t)
    assert rec.close_interval(90_000) == []


def test_the_store_summary_equals_the_summary_of_its_rows(tmp_path: Path) -> None:
    store = SampleStore(tmp_path / "h.sqlite")
    rng = random.Random(3)
    rows = []
    for i in range(2000):  # 5.5 hours with two gaps, two regions, two sources
        if i in (700, 701, 1500):
            continue
        h = Histogram()
        h.add(rng.uniform(1, 500))
        rows.append(Sample("eu" if i % 2 else "us", i * 10_000, 10_000, rng.choice([10_000.0, 0.0]), 1, h.dumps(),
                           "probes" if i % 3 else "dead"))
    store.add(rows[:900])
    store.add(rows[900:])
    since, until = 1_230_000, 19_000_000  # edges inside hours, on row boundaries (ranges are clipped to the window)
    want = summarize(r for r in rows if since <= r.t_ms < until)
    got = summarize_store(store, since, until)
    assert set(got) == set(want)
    for region, by in want.items():
        for source, part in by.items():
            mine = got[region][source]
            assert (mine.span_ms, mine.up_ms, mine.checks, mine.ranges) == (part.span_ms, part.up_ms, part.checks,
                                                                           part.ranges)
            assert mine.hist.counts == part.hist.counts


def test_incidents_are_kept_and_found_by_period(tmp_path: Path) -> None:
    from meshd_plugins.sla.burn import Incident

    path = tmp_path / "h.sqlite"
    store = SampleStore(path)
    store.save_incidents([Incident("eu", 1_000, 61_000, None, ["page_fast"])])
    store.save_incidents([Incident("eu", 1_000, 61_000, 601_000, ["page_fast", "page_slow"]),
                          Incident("eu", 900_000, 960_000, None)])
    store.close()
    again = SampleStore(path)
    assert [(i.opened_ms, i.resolved_ms, i.rules) for i in again.incidents("eu", 0, 10**6)] == [
        (1_000, 601_000, ["page_fast", "page_slow"]), (900_000, None, [])]
    assert [i.opened_ms for i in again.incidents("eu", 700_000, 10**6)] == [900_000]  # the first ended before
    assert again.incidents("us", 0, 10**6) == []
