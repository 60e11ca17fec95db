"""Bus cost of membership per daemon at 7, 25 and 50 members: it must not grow with the federation.

For each size a federation of that many regions is written (a generated
region map), one nats-server started, and the daemons run in a few worker
processes (several daemons per process, membership plugin only). Once every
daemon sees every other alive, each daemon's membership messages (sent and
received, every type including replies) and all its verified bus envelopes
are counted over ``--window`` seconds.

    python bench/membership_bus.py                    # 7, 25, 50 members
    python bench/membership_bus.py --sizes 7 25 --window 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from membership_common import machine, table

from meshd.natsserver import NatsServer
from meshd.testing import BUILTIN_PLUGINS, deep_merge

OTHERS = [p for p in BUILTIN_PLUGINS if p != "membership"]


def write_federation(workdir: Path, size: int, nats_url: str) -> list[Path]:
    from meshd.bootstrap import init_federation

    regions = {f"r{i:02d}": {"location": f"site {i}", "coordinates": {"lat": -60 + (i * 7) % 120, "lon": -170 + i * 6},
                             "jurisdiction": "US", "endpoint": f"https://r{i:02d}.example.com", "capacity": 1000}
               for i in range(size)}
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "regions.yaml").write_text(yaml.safe_dump({"regions": regions}))
    result = init_federation(federation="bench", regions_file=workdir / "regions.yaml", nats_url=nats_url,
                             out=workdir / "federation", force=True)
    for path in result.configs.values():
        data = yaml.safe_load(path.read_text())
        data["nats"] = {"servers": [nats_url]}
        data["http"] = {"port": 0}
        path.write_text(yaml.safe_dump(deep_merge(data, {"plugins": {"disabled": OTHERS}})))
    return list(result.configs.values())


# ---------------------------------------------------------------- worker (several daemons, one process)


def worker(paths: list[str], size: int, settle: float, window: float) -> None:
    import anyio

    from meshd.members import MemberState
    from meshd.testing import running_daemons

    async def run() -> None:
        configs = {Path(p).stem: Path(p) for p in paths}
        async with running_daemons(configs, blocked=OTHERS) as daemons:
            def converged() -> bool:
                return all(len(d.hooks.pm.get_plugin("membership").swim.table.in_states(MemberState.ALIVE))
                           == size - 1 for d in daemons.values())

            deadline = time.monotonic() + 120
            while not converged():
                if time.monotonic() > deadline:
                    raise SystemExit("no convergence")
                await anyio.sleep(0.2)
            await anyio.sleep(settle)

            def by_type() -> dict[str, float]:
                out: dict[str, float] = {}
                for d in daemons.values():
                    for m in d.metrics.registry.collect():
                        if m.name == "meshd_membership_messages":
                            for s in m.samples:
                                if s.name.endswith("_total"):
                                    key = f"{s.labels['direction']} {s.labels['type']}"
                                    out[key] = out.get(key, 0.0) + s.value
                return out

            def sample() -> dict[str, tuple[float, float, float]]:
                out = {}
                for r, d in daemons.items():
                    reg = d.metrics.registry
                    mem = sum(s.value for m in reg.collect() if m.name == "meshd_membership_messages"
                              for s in m.samples if s.name.endswith("_total"))
                    env = sum(s.value for m in reg.collect() if m.name in ("meshd_envelopes_sent",
                                                                          "meshd_envelopes_received")
                              for s in m.samples if s.name.endswith("_total"))
                    dead = sum(s.value for m in reg.collect() if m.name == "meshd_membership_transitions"
                               for s in m.samples if s.name.endswith("_total") and s.labels.get("state") in
                               ("dead", "suspect"))
                    out[r] = (mem, env, dead)
                return out

            before, types0, t0 = sample(), by_type(), time.monotonic()
            await anyio.sleep(window)
            after, types1, wall = sample(), by_type(), time.monotonic() - t0
            result = {r: {"membership_msgs_per_s": (after[r][0] - before[r][0]) / wall,
                          "envelopes_per_s": (after[r][1] - before[r][1]) / wall,
                          "suspect_or_dead": after[r][2] - before[r][2]} for r in daemons}
            result["_types"] = {k: (v - types0.get(k, 0.0)) / wall / len(daemons) for k, v in types1.items()}
            print(json.dumps(result), flush=True)
            # Keep running until every worker has measured: a leave would show up in their windows.
            await anyio.to_thread.run_sync(sys.stdin.readline)

    anyio.run(run, backend="asyncio")


# ---------------------------------------------------------------- driver


def measure(size: int, workers: int, settle: float, window: float) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix=f"bench-bus-{size}-") as tmp:
        server = NatsServer(Path(tmp) / "nats").start()
        try:
            paths = write_federation(Path(tmp), size, server.url)
            chunks = [paths[i::workers] for i in range(workers)]
            chunks = [c for c in chunks if c]
            procs = [subprocess.Popen([sys.executable, __file__, "--worker", str(size), str(settle), str(window),
                                       *map(str, chunk)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                     for chunk in chunks]
            lines = [p.stdout.readline() for p in procs]  # type: ignore[union-attr]
            for p in procs:
                p.communicate("stop\n", timeout=60)
                if p.returncode:
                    raise SystemExit(f"worker failed ({p.returncode})")
            results: dict[str, dict[str, float]] = {}
            types: dict[str, float] = {}
            for line, chunk in zip(lines, chunks):
                part = json.loads(line)
                for key, rate in part.pop("_types").items():  # per-daemon rates, weighted by daemons
                    types[key] = types.get(key, 0.0) + rate * len(chunk) / size
                results.update(part)
            results["_types"] = types
            return results
        finally:
            server.stop()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[5:], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[7, 25, 50])
    parser.add_argument("--per-process", type=int, default=10, help="daemons per worker process")
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=30.0)
    args = parser.parse_args()
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; {machine()}", flush=True)
    rows = []
    for size in args.sizes:
        workers = max(1, -(-size // args.per_process))
        res = measure(size, workers, args.settle, args.window)
        types = res.pop("_types")
        print(f"{size} members, per daemon by type: "
              + ", ".join(f"{k} {v:.2f}/s" for k, v in sorted(types.items()) if v >= 0.005), flush=True)
        mem = [r["membership_msgs_per_s"] for r in res.values()]
        env = [r["envelopes_per_s"] for r in res.values()]
        bad = sum(r["suspect_or_dead"] for r in res.values())
        rows.append([size, workers, statistics.fmean(mem), max(mem), statistics.fmean(env), max(env), int(bad)])
        print(f"{size} members: {statistics.fmean(mem):.2f} membership msgs/s per daemon", flush=True)
    print(f"# after: {machine()}\n")
    print(table(["members", "processes", "membership msgs/s per daemon, mean", "max",
                 "bus envelopes/s per daemon, mean", "max", "suspect/dead transitions"], rows))


if __name__ == "__main__":
    main()
