"""Routing benchmarks: in-process decisions per second, and the NATS route service beside a bare echo.

    python bench/routing_bench.py                      # both parts
    python bench/routing_bench.py --skip-nats          # in-process only
    python bench/routing_bench.py --requests 5000 --decisions 2000000 --cpu 0
    git show REF:plugins/routing/engine.py > /tmp/engine_ref.py
    python bench/routing_bench.py --skip-nats --baseline-engine /tmp/engine_ref.py   # old vs new, same run

Part 1 calls :meth:`meshd_plugins.routing.engine.RoutingEngine.route` in a loop on one core
(``--cpu`` pins the process) over a pre-drawn workload: 10,000 tenants in the
sample jurisdictions, 150 client locations (country and city codes, regions),
with and without sticky sessions, with a route filter through the real pluggy
hook facade, with membership churn invalidating the cached plans, and with
never-seen coordinates on every call (the cold path). The loop itself is
included in the timing; its empty cost is reported beside.

Part 2 starts a nats-server, a bare nats-py echo responder process and one
real ``meshd run`` daemon (routing plugin only), then times request/reply
round trips from this process, alternating echo and route requests so both
see the same machine load. The route request is a signed envelope, verified
by the daemon, routed, answered with a signed envelope and verified here.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchlib import load_module
from benchlib import machine_line as machine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from meshd.config import RegionMap, load_model_file  # noqa: E402
from meshd.tenants import Tenant  # noqa: E402
from meshd_plugins.routing.engine import RoutingEngine, RoutingError  # noqa: E402
from meshd_plugins.routing.places import CITIES, COUNTRIES  # noqa: E402

# ---------------------------------------------------------------- part 1: in-process


def workload(regions: dict[str, Any], n_tenants: int, seed: int) -> tuple[dict[str, Tenant], list[str]]:
    rng = random.Random(seed)
    by_j: dict[str, list[str]] = {}
    for name, r in regions.items():
        by_j.setdefault(r.jurisdiction, []).append(name)
    tenants = {}
    for i in range(n_tenants):
        j = rng.choice(sorted(by_j))
        home = rng.choice(by_j[j]) if rng.random() < 0.3 else None
        tenants[f"tenant-{i}"] = Tenant(residency=j, home=home)
    locations = sorted(rng.sample(sorted(COUNTRIES), 90)) + sorted(rng.sample(sorted(CITIES), 53)) + sorted(regions)
    return tenants, locations


def timed(label: str, calls: list[tuple[Any, ...]], fn: Any, repeat: int) -> dict[str, Any]:
    """Run ``fn(*call)`` over ``calls`` ``repeat`` times; best-of-3 decisions per second.

    Also in this thread's CPU time (``cpu_per_s``): on a machine shared with other work the wall clock
    also counts the time the loop waited for a core.
    """
    best = best_cpu = float("inf")
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.thread_time()
        for _ in range(repeat):
            for call in calls:
                fn(*call)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.thread_time() - c0)
    n = len(calls) * repeat
    return {"scenario": label, "calls": n, "seconds": round(best, 4), "per_s": round(n / best),
            "us_per_call": round(best / n * 1e6, 3), "cpu_per_s": round(n / best_cpu)}


def load_engine(path: Path) -> Any:
    """``RoutingEngine`` of another version of engine.py (e.g. ``git show REF:plugins/routing/engine.py``)."""
    return load_module(path, "meshd_plugins.routing._baseline_engine").RoutingEngine


def bench_inprocess(total: int, seed: int, RoutingEngine: Any = RoutingEngine) -> list[dict[str, Any]]:
    from meshd import hookimpl
    from meshd.plugins import Hooks, new_plugin_manager

    regions = load_model_file(ROOT / "etc" / "region_map.yaml", RegionMap).regions
    tenants, locations = workload(regions, 10_000, seed)
    rng = random.Random(seed + 1)
    pool = 100_000
    calls = [(rng.choice(locations), rng.choice(list(tenants))) for _ in range(pool)]
    repeat = max(1, total // pool)
    results = []

    def noop(*_a: Any) -> None:
        return None

    results.append(timed("empty loop (the harness alone)", calls, noop, repeat))

    engine = RoutingEngine(regions, tenants)
    for loc, tenant in calls:  # warm the plan cache as a running daemon would be
        engine.route(loc, tenant)
    results.append(timed("route(location, tenant): warm plans", calls, engine.route, repeat))

    # Three regions degraded/dead/failed over: more rules, same cost per call once planned.
    engine.set_member("eu-west-1", "dead")
    engine.set_member("us-west-2", "suspect")
    engine.apply_decision({"region": "us-east-1", "term": 1, "action": "failover", "target": "us-west-2"})
    for loc, tenant in calls:
        engine.route(loc, tenant)
    results.append(timed("route(): with dead, suspect and failed-over regions", calls, engine.route, repeat))

    sessions = [(loc, tenant, None, f"s{rng.randrange(20_000)}") for loc, tenant in calls]
    engine = RoutingEngine(regions, tenants)
    results.append(timed("route(..., session=S): sticky sessions (20k live)", sessions, engine.route, repeat))

    # The real pluggy facade with one filter plugin that keeps everything.
    class KeepAll:
        @hookimpl
        def meshd_route_filter(self, daemon: Any, request: Any, candidates: Any) -> Any:
            return None

    hooks = Hooks(new_plugin_manager())
    hooks.pm.register(KeepAll(), name="keep-all")
    engine = RoutingEngine(regions, tenants,
                           route_filter=lambda request, cands: hooks.route_filter(None, request, cands))
    results.append(timed("route(): one route filter through the pluggy hook", calls, engine.route,
                         max(1, repeat // 10)))

    # The same filter answering with a list: the facade checks the result against the hook's type.
    class KeepAllAsList:
        @hookimpl
        def meshd_route_filter(self, daemon: Any, request: Any, candidates: Any) -> Any:
            return list(candidates)

    listing = Hooks(new_plugin_manager())
    listing.pm.register(KeepAllAsList(), name="keep-all-as-list")
    engine = RoutingEngine(regions, tenants,
                           route_filter=lambda request, cands: listing.route_filter(None, request, cands))
    results.append(timed("route(): one route filter answering a list (type-checked)", calls, engine.route,
                         max(1, repeat // 10)))

    # Churn: a membership change every 10,000 decisions throws every cached plan away.
    engine = RoutingEngine(regions, tenants)
    churn_calls = list(calls)
    flip = {"n": 0}

    def churning(loc: Any, tenant: str) -> Any:
        flip["n"] += 1
        if flip["n"] % 10_000 == 0:
            engine.set_member("eu-central-1", "suspect" if flip["n"] % 20_000 else "alive")
        return engine.route(loc, tenant)

    results.append(timed("route(): membership change every 10k decisions", churn_calls, churning, repeat))

    # Cold: never-seen coordinates every call (plans built each time; cache bounded).
    cold = [(f"{rng.uniform(-60, 70):.5f},{rng.uniform(-180, 180):.5f}", rng.choice(list(tenants)))
            for _ in range(pool)]
    engine = RoutingEngine(regions, tenants)
    results.append(timed("route(): unseen lat,lon every call (cold path)", cold, engine.route, 1))
    return results


# ---------------------------------------------------------------- part 2: NATS


ECHO = r"""
import asyncio, sys, nats
async def main():
    nc = await nats.connect(sys.argv[1])
    async def echo(msg):
        await msg.respond(msg.data)
    await nc.subscribe("bench.echo", cb=echo)
    await nc.flush()
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": pct(values, 50), "p90": pct(values, 90), "p99": pct(values, 99),
            "p99.9": pct(values, 99.9), "max": max(values), "mean": statistics.fmean(values)}


async def nats_rounds(url: str, fed_dir: Path, requests: int, warmup: int) -> dict[str, dict[str, float]]:
    import nats

    from meshd.bus import Bus
    from meshd.config import NatsConfig, TrustBundle
    from meshd.envelope import Opener, Sealer
    from meshd.identity import Signer, TrustStore, load_private_key
    from meshd.metrics import Metrics
    from meshd.transport import NatsTransport

    raw = await nats.connect(url)
    trust = load_model_file(fed_dir / "trust.yaml", TrustBundle)
    # The client speaks as us-east-1 (whose daemon is not running): a region key from the trust bundle.
    signer = Signer(load_private_key(fed_dir / "keys" / "us-east-1.key"))
    transport = NatsTransport(NatsConfig(servers=[url]), name="bench-client")
    bus = Bus(transport, Sealer("bench", "us-east-1", signer, time.time_ns() // 1_000_000),
              Opener("bench", TrustStore(trust)), Metrics())
    await bus.connect()
    body = {"tenant": "acme-eu", "from": "FR"}
    payload = json.dumps(body).encode()
    echo_t: list[float] = []
    route_t: list[float] = []
    regions = ["eu-central-1", "eu-west-1"]
    for i in range(warmup + requests):
        t0 = time.perf_counter()
        await raw.request("bench.echo", payload, timeout=2)
        t1 = time.perf_counter()
        env = await bus.request("route", "route.request", body, target="eu-west-1", timeout=2)
        t2 = time.perf_counter()
        if not env.body.get("ok") or env.body.get("region") not in regions:
            raise RuntimeError(f"unexpected route answer: {env.body}")
        if i >= warmup:
            echo_t.append((t1 - t0) * 1000)
            route_t.append((t2 - t1) * 1000)
    await raw.close()
    await transport.close()
    return {"bare nats-py request/reply echo": summary(echo_t),
            "meshd route service (signed both ways)": summary(route_t)}


def bench_nats(requests: int, warmup: int) -> dict[str, dict[str, float]]:
    import anyio
    import yaml

    from meshd.natsserver import NatsServer, free_port
    from meshd.testing import BUILTIN_PLUGINS, write_federation

    with tempfile.TemporaryDirectory(prefix="routing-bench-") as tmp:
        work = Path(tmp)
        server = NatsServer(work / "nats").start()
        procs: list[subprocess.Popen[bytes]] = []
        try:
            tenants = yaml.safe_load((ROOT / "etc" / "tenants.yaml").read_text())
            (work / "tenants.yaml").write_text(yaml.safe_dump(tenants))
            port = free_port()
            regions = list(load_model_file(ROOT / "etc" / "region_map.yaml", RegionMap).regions)
            configs = write_federation(work, regions, server.url, federation="bench", patch={
                "http": {"port": port}, "log": {"level": "warning"},
                "plugins": {"disabled": [p for p in BUILTIN_PLUGINS if p != "routing"]}})
            procs.append(subprocess.Popen([sys.executable, "-c", ECHO, server.url], stdout=subprocess.PIPE))
            assert procs[0].stdout is not None and procs[0].stdout.readline().strip() == b"ready"
            procs.append(subprocess.Popen([sys.executable, "-m", "meshd", "run", "--config",
                                           str(configs["eu-west-1"])], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, cwd=ROOT))
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=1) as resp:
                        if json.loads(resp.read()).get("state") == "ready":
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the daemon did not become ready")
                time.sleep(0.1)
            return anyio.run(nats_rounds, server.url, work / "federation", requests, warmup)
        finally:
            for p in procs:
                p.terminate()
                p.wait(10)
            server.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decisions", type=int, default=1_000_000, help="calls per in-process scenario")
    ap.add_argument("--requests", type=int, default=5000, help="round trips per NATS scenario")
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--cpu", type=int, default=None, help="pin the in-process part to this CPU (one core)")
    ap.add_argument("--skip-nats", action="store_true")
    ap.add_argument("--skip-inprocess", action="store_true")
    ap.add_argument("--baseline-engine", type=Path, default=None, metavar="FILE",
                    help="also run the in-process part with this engine.py (an earlier version), same run")
    ap.add_argument("--passes", type=int, default=3, help="alternating old/new passes with --baseline-engine")
    ap.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = ap.parse_args()
    report: dict[str, Any] = {"machine": machine(), "command": " ".join([Path(sys.executable).name, *sys.argv])}
    if not args.skip_inprocess:
        # Pinned for the in-process part only: processes started later (nats-server, the
        # echo responder, the daemon) would inherit the affinity and share one core.
        everywhere = os.sched_getaffinity(0)
        if args.cpu is not None:
            os.sched_setaffinity(0, {args.cpu})
        try:
            if args.baseline_engine is None:
                report["inprocess"] = bench_inprocess(args.decisions, args.seed)
            else:
                # Alternate old and new passes, best of each scenario: load on a shared machine
                # comes and goes, and must hit both alike.
                base = load_engine(args.baseline_engine)
                passes: dict[str, list[list[dict[str, Any]]]] = {"baseline": [], "inprocess": []}
                for _ in range(args.passes):
                    passes["baseline"].append(bench_inprocess(args.decisions, args.seed, base))
                    passes["inprocess"].append(bench_inprocess(args.decisions, args.seed))
                for key, runs in passes.items():
                    report[key] = [min(rows, key=lambda r: r["seconds"]) for rows in zip(*runs)]
        finally:
            os.sched_setaffinity(0, everywhere)
    if not args.skip_nats:
        report["nats"] = bench_nats(args.requests, args.warmup)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}  {report['machine']}\n# {report['command']}\n")
    if "inprocess" in report:
        if "baseline" in report:
            print(f"baseline engine: {args.baseline_engine}\n")
            print("| scenario | calls | decisions/s | us/call | baseline decisions/s | ratio | decisions/s, CPU time "
                  "| baseline, CPU time | ratio, CPU time |")
            print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            for r, b in zip(report["inprocess"], report["baseline"]):
                print(f"| {r['scenario']} | {r['calls']:,} | {r['per_s']:,} | {r['us_per_call']} | {b['per_s']:,} "
                      f"| {r['per_s'] / b['per_s']:.2f} | {r['cpu_per_s']:,} | {b['cpu_per_s']:,} "
                      f"| {r['cpu_per_s'] / b['cpu_per_s']:.2f} |")
        else:
            print("| scenario | calls | decisions/s | us/call | decisions/s, CPU time |\n| --- | ---: | ---: | ---: | ---: |")
            for r in report["inprocess"]:
                print(f"| {r['scenario']} | {r['calls']:,} | {r['per_s']:,} | {r['us_per_call']} | {r['cpu_per_s']:,} |")
        print()
    if "nats" in report:
        print("| round trip (ms) | n | p50 | p90 | p99 | p99.9 | max |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, s in report["nats"].items():
            print(f"| {name} | {s['n']} | {s['p50']:.3f} | {s['p90']:.3f} | {s['p99']:.3f} | {s['p99.9']:.3f} "
                  f"| {s['max']:.3f} |")
        values = list(report["nats"].values())
        print(f"\nroute/echo ratio: p50 {values[1]['p50'] / values[0]['p50']:.2f}x, "
              f"p99 {values[1]['p99'] / values[0]['p99']:.2f}x")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except RoutingError as exc:
        print(f"routing error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
