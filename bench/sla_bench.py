"""What recording SLIs costs a daemon, and how many bytes a region-month of history takes.

    python bench/sla_bench.py [--probes 20] [--probe-interval 1] [--intervals 3000] [--days 30]

Part 1, recording cost: ``--probes`` probes each reporting every
``--probe-interval`` seconds through the real ``meshd_probe_result`` hook (a
pluggy call into the sla plugin's recorder), and one history row written per
10 s interval (WAL, one transaction per row, as the daemon does). The
simulated intervals run back to back; the CPU time (process time, threads
included) per interval over 10 s is the share of one core. Baseline, same
run: a naive recorder that writes every probe result as its own row in the
same SQLite mode. The ratio is meshd / naive.

Part 3, ``meshd sla`` over 30 days for 7 regions (``--query``): each region's
store holds 30 days of 10 s rows; a region's answer is
:func:`summarize_store` (SQLite sums, gaps-and-islands ranges, hourly
histograms) encoded as the bus message's JSON; the asking daemon decodes the
seven answers and merges each region. Regions answer in parallel on their
own hosts, so the answer time is the slowest region plus the merge. Baseline,
same run: one region summarised from its rows read into Python.

Part 2, disk: ``--days`` of 10 s rows for one region with a realistic latency
spread, written to a fresh file and measured after a checkpoint; then the
same month folded into 5-minute rows (what is kept beyond 35 days).
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pluggy
from benchlib import machine_line as machine

from meshd import hookspecs
from meshd_plugins.sla import Histogram, Part, Recorder, Sample, SampleStore, SlaPlugin, merge, summarize
from meshd_plugins.sla.summary import condemned, quorum_of, summarize_store

INTERVAL_S = 10.0


def hook_caller(recorder: Recorder) -> pluggy.HookCaller:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    plugin = SlaPlugin()
    plugin.runtime = SimpleNamespace(recorder=recorder)  # type: ignore[assignment]
    pm.register(plugin)
    return pm.hook.meshd_probe_result


def workload(probes: int, probe_interval: float) -> tuple[int, list[float], list[str]]:
    """The same results for both recorders: (results per interval, latencies to cycle through, probe names)."""
    rng = random.Random(1)
    return (round(probes * INTERVAL_S / probe_interval), [rng.lognormvariate(3.5, 0.6) for _ in range(4096)],
            [f"probe-{i}" for i in range(probes)])


def recording_cost(probes: int, probe_interval: float, intervals: int, tmp: Path) -> float:
    """CPU seconds per 10 s interval, through the hook and the store."""
    recorder = Recorder("eu-west-1", int(INTERVAL_S * 1000))
    store = SampleStore(tmp / "meshd.sqlite")
    call = hook_caller(recorder)
    per_interval, latencies, names = workload(probes, probe_interval)
    began = time.process_time()
    for k in range(intervals):
        for i in range(per_interval):
            call(daemon=None, probe=names[i % probes], kind="http", ok=i % 97 != 0,
                 latency_ms=latencies[(k * per_interval + i) % 4096], at=k * 10.0 + i * 10.0 / per_interval)
        store.add(recorder.close_interval(k * 10_000))
    spent = time.process_time() - began
    store.close()
    return spent / intervals


def naive_cost(probes: int, probe_interval: float, intervals: int, tmp: Path) -> float:
    """CPU seconds per 10 s interval for one row per probe result."""
    db = sqlite3.connect(tmp / "naive.sqlite", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE results (probe TEXT, at REAL, ok INTEGER, latency_ms REAL)")
    per_interval, latencies, names = workload(probes, probe_interval)
    began = time.process_time()
    for k in range(intervals):
        pending = []
        for i in range(per_interval):
            pending.append((names[i % probes], k * 10.0, i % 97 != 0, latencies[(k * per_interval + i) % 4096]))
        db.execute("BEGIN")
        db.executemany("INSERT INTO results VALUES (?,?,?,?)", pending)
        db.execute("COMMIT")
    spent = time.process_time() - began
    db.close()
    return spent / intervals


def file_bytes(path: Path) -> int:
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("VACUUM")
    db.close()
    return path.stat().st_size


def disk(days: int, checks_per_row: int, tmp: Path) -> tuple[int, int, int]:
    """(rows, bytes at 10 s, bytes folded to 5 min) for one region over ``days``."""
    path = tmp / "month.sqlite"
    store = SampleStore(path)
    rng = random.Random(2)
    rows = days * 8640
    batch = []
    for i in range(rows):
        h = Histogram()
        for _ in range(checks_per_row):
            h.add(rng.lognormvariate(3.5, 0.6))
        up = 10_000.0 if rng.random() > 0.001 else 0.0
        batch.append(Sample("eu-west-1", i * 10_000, 10_000, up, checks_per_row, h.dumps()))
        if len(batch) == 8640:
            store.add(batch)
            batch = []
    store.add(batch)
    store.close()
    full = file_bytes(path)
    store = SampleStore(path)
    store.downsample(before_ms=rows * 10_000)
    store.close()
    return rows, full, file_bytes(path)


def month_store(path: Path, region: str, days: int, seed: int) -> None:
    store = SampleStore(path)
    rng = random.Random(seed)
    batch = []
    for i in range(days * 8640):
        h = Histogram()
        for _ in range(20):
            h.add(rng.lognormvariate(3.5, 0.6))
        batch.append(Sample(region, i * 10_000, 10_000, 10_000.0 if rng.random() > 0.001 else 0.0, 20, h.dumps()))
        if len(batch) == 8640:
            store.add(batch)
            batch = []
    store.add(batch)
    store.close()


def query(days: int, regions: int, tmp: Path) -> None:
    names = [f"region-{i}" for i in range(regions)]
    for i, name in enumerate(names):
        month_store(tmp / f"{name}.sqlite", name, days, i)
    until = days * 86_400_000
    answers, per_region = [], []
    for name in names:
        store = SampleStore(tmp / f"{name}.sqlite")
        began = time.perf_counter()
        parts = summarize_store(store, 0, until)
        wire = json.dumps({r: {src: p.to_json() for src, p in by.items()} for r, by in parts.items()})
        per_region.append(time.perf_counter() - began)
        answers.append(wire)
        store.close()
    began = time.perf_counter()
    decoded = [{r: {src: Part.from_json(p) for src, p in by.items()} for r, by in json.loads(w).items()}
               for w in answers]
    merged = {name: merge(name, decoded) for name in names}
    merging = time.perf_counter() - began
    store = SampleStore(tmp / f"{names[0]}.sqlite")
    began = time.perf_counter()
    summarize(store.samples(0, until))
    naive = time.perf_counter() - began
    store.close()
    slowest = max(per_region)
    print(f"meshd sla, {regions} regions x {days} days of 10 s rows:")
    print(f"  one region's answer: median {sorted(per_region)[len(per_region) // 2]:.3f} s, slowest {slowest:.3f} s "
          f"({max(len(w) for w in answers)} bytes of JSON); merging {regions} answers: {merging * 1000:.1f} ms")
    print(f"  answer time (slowest region + merge): {slowest + merging:.3f} s (target <= 1 s); "
          f"all regions one after the other: {sum(per_region) + merging:.3f} s")
    print(f"  baseline, one region from its rows in Python: {naive:.3f} s; ratio {slowest / naive:.3f}")
    assert all(m.availability is not None for m in merged.values())
    # Without --period, meshd sla judges each plan over slo.yaml's windows: 28 d, 30 d and the month so far (here
    # the last 15 days), three answers per region read one after the other (one SQLite connection per store).
    spans = [(until - 28 * 86_400_000, until), (0, until), (until - 15 * 86_400_000, until)]
    three = []
    for name in names:
        store = SampleStore(tmp / f"{name}.sqlite")
        began = time.perf_counter()
        wires = [json.dumps({r: {src: p.to_json() for src, p in by.items()} for r, by in
                             summarize_store(store, a, b).items()}) for a, b in spans]
        three.append(time.perf_counter() - began)
        store.close()
    began = time.perf_counter()
    for _ in spans:
        decoded = [{r: {src: Part.from_json(p) for src, p in by.items()} for r, by in json.loads(w).items()}
                   for w in answers]
        for name in names:
            condemned(name, decoded, quorum_of(regions))
            merge(name, decoded, quorum=quorum_of(regions))
    merging3 = time.perf_counter() - began
    print(f"  default windows (28d, 30d, month): slowest region {max(three):.3f} s for its three answers "
          f"({max(len(w) for w in wires)} bytes the largest), merging {merging3 * 1000:.1f} ms; answer time "
          f"{max(three) + merging3:.3f} s (target <= 1 s); ratio to one window {max(three) / slowest:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--probes", type=int, default=20)
    ap.add_argument("--probe-interval", type=float, default=1.0, help="seconds between two checks of one probe")
    ap.add_argument("--intervals", type=int, default=3000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--query", action="store_true", help="only part 3: meshd sla over --days for --regions")
    ap.add_argument("--regions", type=int, default=7)
    args = ap.parse_args()
    if args.query:
        print(time.strftime("%Y-%m-%d %H:%M:%S %Z"), "|", machine())
        with tempfile.TemporaryDirectory() as d:
            query(args.days, args.regions, Path(d))
        return
    print(time.strftime("%Y-%m-%d %H:%M:%S %Z"), "|", machine())
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ours = recording_cost(args.probes, args.probe_interval, args.intervals, tmp)
        naive = naive_cost(args.probes, args.probe_interval, args.intervals, tmp)
        print(f"recording, {args.probes} probes every {args.probe_interval:g} s, {args.intervals} intervals of 10 s:")
        print(f"  meshd (hook + recorder + one row per interval): {ours * 1000:.3f} ms CPU per interval = "
              f"{ours / INTERVAL_S * 100:.4f} % of a core (target <= 0.5 %)")
        print(f"  naive (one row per result):                     {naive * 1000:.3f} ms CPU per interval = "
              f"{naive / INTERVAL_S * 100:.4f} % of a core")
        print(f"  ratio meshd / naive: {ours / naive:.2f}")
        checks = round(args.probes * INTERVAL_S / args.probe_interval)
        rows, full, folded = disk(args.days, checks, tmp)
        print(f"disk, one region, {args.days} days, {checks} checks per row: {rows} rows, "
              f"{full / 1e6:.2f} MB at 10 s ({full / rows:.1f} B/row); folded to 5 min: {folded / 1e6:.3f} MB")


if __name__ == "__main__":
    main()
