"""Tenant registry benchmarks: loading 10,010 tenants, and one change reaching 7 regions' copies.

    python bench/registry_bench.py                    # one nats-server
    python bench/registry_bench.py --cluster          # a 3-node JetStream cluster, R3 bucket
    python bench/registry_bench.py --tenants 10010 --changes 200 --regions 7

Part 1 fills ``meshd_tenants`` with N records (the JSON the registry writes),
then starts a fresh process that opens the registry the way a starting daemon
does (:class:`meshd.tenantkv.KvTenantDirectory`: watch, validate every
record, build the copy) and reports the time to the first full copy and the
RSS it added. Baseline, same run, same kind of process: bare nats-py
``watchall()`` keeping each value's bytes in a dict.

Part 2 opens the registry on R connections in this process (one per region),
then updates one tenant at a time and times from the update call until every
region's copy has the new revision (its subscribe callback fired). Baseline,
same run: bare nats-py ``put`` on one connection and ``watchall`` on R others,
until every watcher has seen the revision.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import machine_line as machine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import anyio  # noqa: E402
import psutil  # noqa: E402

from meshd.config import NatsConfig, TenantRegistryConfig  # noqa: E402
from meshd.natsserver import NatsCluster, NatsServer  # noqa: E402
from meshd.tenantdir import TenantChange, new_tenant_id, public_record  # noqa: E402
from meshd.tenantkv import GLOBAL_BUCKET, opened  # noqa: E402
from meshd.tenants import Branding, Tenant  # noqa: E402
from meshd.transport import NatsTransport  # noqa: E402

JURISDICTIONS = ["EU", "US", "CA", "BH", "SG"]
PLANS = ["starter", "business", "pro"]


def rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


# ---------------------------------------------------------------- filling the bucket


async def fill(urls: list[str], n: int, replicas: int) -> list[str]:
    transport = NatsTransport(NatsConfig(servers=urls), name="bench-fill")
    await transport.connect()
    kv = await transport.key_value(GLOBAL_BUCKET, replicas=replicas, history=10)
    now = time.time()
    ids = []
    sem = asyncio.Semaphore(256)

    async def put(i: int) -> None:
        tid = new_tenant_id()
        ids.append(tid)
        tenant = Tenant(id=tid, name=f"Tenant {i}", partner=f"p{i % 40}", plan=PLANS[i % 3],
                        residency=JURISDICTIONS[i % 5], status="active", created=now, updated=now, currency="EUR",
                        branding=Branding(primary_color="#1f6feb", company_name=f"Company {i}") if i % 4 == 0
                        else None)
        async with sem:
            await kv.put(tid, json.dumps(public_record(tenant), sort_keys=True, separators=(",", ":")).encode())

    await asyncio.gather(*(put(i) for i in range(n)))
    await transport.close()
    return ids


# ---------------------------------------------------------------- part 1: one process loading the registry


async def child_load(urls: list[str], mode: str, replicas: int) -> dict[str, Any]:
    import gc

    gc.collect()
    before = rss_mib()
    if mode == "meshd":
        transport = NatsTransport(NatsConfig(servers=urls), name="bench-load")
        await transport.connect()
        connected = rss_mib()
        start = time.perf_counter()
        async with opened(transport, TenantRegistryConfig(registry="kv", replicas=replicas),
                          jurisdiction="EU") as directory:
            elapsed = time.perf_counter() - start
            count = len(directory.tenants)
            gc.collect()
            after = rss_mib()
        await transport.close()
    else:
        import nats

        nc = await nats.connect(servers=urls)
        connected = rss_mib()
        start = time.perf_counter()
        kv = await nc.jetstream().key_value(GLOBAL_BUCKET)
        watcher = await kv.watchall()
        copy: dict[str, bytes] = {}
        async for entry in watcher:
            if entry is None:
                break
            copy[entry.key] = entry.value
        elapsed = time.perf_counter() - start
        count = len(copy)
        gc.collect()
        after = rss_mib()
        await watcher.stop()
        await nc.close()
    return {"mode": mode, "seconds": elapsed, "tenants": count, "rss_before_mib": before,
            "rss_connected_mib": connected, "rss_after_mib": after, "rss_added_mib": after - connected}


def load_in_child(urls: list[str], mode: str, replicas: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--urls", ",".join(urls),
                          "--replicas", str(replicas)], capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# ---------------------------------------------------------------- part 2: a change reaching every region


async def propagation(urls: list[str], ids: list[str], regions: int, changes: int, replicas: int) -> dict[str, Any]:
    settings = TenantRegistryConfig(registry="kv", replicas=replicas)
    transports = [NatsTransport(NatsConfig(servers=urls), name=f"bench-r{i}") for i in range(regions + 1)]
    for t in transports:
        await t.connect()
    latencies: list[float] = []
    async with opened(transports[0], settings, jurisdiction="EU") as writer:
        copies = []
        for i, t in enumerate(transports[1:]):
            copies.append(await _enter(opened(t, settings, jurisdiction=JURISDICTIONS[i % 5])))
        pending: dict[str, Any] = {}

        def on_change(change: TenantChange) -> None:
            wait = pending.get(change.tenant_id)
            if wait is not None and change.revision >= wait["revision"]:
                wait["left"] -= 1
                if wait["left"] == 0:
                    wait["done"].set()

        for d in copies:
            d.subscribe(on_change)
        for n in range(changes):
            tid = ids[n % len(ids)]
            wait = {"revision": 1 << 62, "left": regions, "done": anyio.Event()}
            pending[tid] = wait
            start = time.perf_counter()
            # The writer's update returns once its own copy has the change; the revision is then known.
            current = writer.tenants[tid]
            task_result: list[Any] = []

            async def update(tid: str = tid, current: Tenant = current, out: list[Any] = task_result) -> None:
                out.append(await writer.update(tid, {"plan": PLANS[(PLANS.index(current.plan or "pro") + 1) % 3]}))

            async with anyio.create_task_group() as tg:
                tg.start_soon(update)
                # The revision is only known after the write; count copies at any newer revision.
                wait["revision"] = current.revision + 1
            with anyio.fail_after(10):
                await wait["done"].wait()
            latencies.append(time.perf_counter() - start)
            del pending[tid]
        for cm in reversed(copies):
            await _exit(cm)
    for t in transports:
        await t.close()
    return summary(latencies)


_contexts: dict[int, Any] = {}


async def _enter(cm: Any) -> Any:
    value = await cm.__aenter__()
    _contexts[id(value)] = cm
    return value


async def _exit(value: Any) -> None:
    await _contexts.pop(id(value)).__aexit__(None, None, None)


async def bare_propagation(urls: list[str], ids: list[str], regions: int, changes: int) -> dict[str, Any]:
    import nats

    writer = await nats.connect(servers=urls)
    kv = await writer.jetstream().key_value(GLOBAL_BUCKET)
    readers = [await nats.connect(servers=urls) for _ in range(regions)]
    state: dict[str, Any] = {"key": None, "after": 1 << 62, "left": regions, "done": asyncio.Event()}
    watchers = []

    async def follow(conn: Any) -> None:
        watcher = await (await conn.jetstream().key_value(GLOBAL_BUCKET)).watchall()
        watchers.append(watcher)
        async for entry in watcher:
            if entry is not None and entry.key == state["key"] and entry.revision > state["after"]:
                state["left"] -= 1
                if state["left"] == 0:
                    state["done"].set()

    tasks = [asyncio.create_task(follow(c)) for c in readers]
    while len(watchers) < regions:
        await asyncio.sleep(0.01)
    latencies = []
    for n in range(changes):
        tid = ids[n % len(ids)]
        start = time.perf_counter()
        # Read, modify, compare-and-set: what the registry's update does, so both time the same round trips.
        entry = await kv.get(tid)
        record = json.loads(entry.value)
        record["plan"] = PLANS[(PLANS.index(record["plan"]) + 1) % 3]
        state.update(key=tid, after=entry.revision, left=regions, done=asyncio.Event())
        await kv.update(tid, json.dumps(record).encode(), last=entry.revision)
        await asyncio.wait_for(state["done"].wait(), 10)
        latencies.append(time.perf_counter() - start)
    for w in watchers:
        await w.stop()
    for t in tasks:
        t.cancel()
    for c in [writer, *readers]:
        await c.close()
    return summary(latencies)


def summary(latencies: list[float]) -> dict[str, Any]:
    ms = [x * 1000 for x in latencies]
    return {"n": len(ms), "p50_ms": round(p(ms, 0.5), 3), "p99_ms": round(p(ms, 0.99), 3),
            "max_ms": round(max(ms), 3), "mean_ms": round(statistics.mean(ms), 3)}


# ---------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tenants", type=int, default=10_010)
    ap.add_argument("--changes", type=int, default=200)
    ap.add_argument("--regions", type=int, default=7)
    ap.add_argument("--cluster", action="store_true", help="a 3-node cluster and an R3 bucket")
    ap.add_argument("--child", choices=["meshd", "bare"], help=argparse.SUPPRESS)
    ap.add_argument("--urls", help=argparse.SUPPRESS)
    ap.add_argument("--replicas", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(anyio.run(child_load, args.urls.split(","), args.child, args.replicas)))
        return

    print(f"# registry_bench {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    print(f"# {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.cluster:
            server: Any = NatsCluster(Path(tmp) / "cluster", size=3).start()
            urls, replicas = server.urls, 3
        else:
            server = NatsServer(Path(tmp) / "nats").start()
            urls, replicas = [server.url], 1
        try:
            print(f"# {'3-node cluster, R3' if args.cluster else 'one nats-server, R1'}; "
                  f"{args.tenants} tenants, {args.regions} regions, {args.changes} changes")
            start = time.perf_counter()
            ids = anyio.run(fill, urls, args.tenants, replicas)
            print(f"fill: {len(ids)} records in {time.perf_counter() - start:.2f} s")
            for mode in ("bare", "meshd", "bare", "meshd"):
                r = load_in_child(urls, mode, replicas)
                print(f"load {mode:5}: {r['tenants']} tenants in {r['seconds']:.3f} s; RSS added "
                      f"{r['rss_added_mib']:.1f} MiB (process {r['rss_after_mib']:.1f} MiB)")
            meshd = anyio.run(propagation, urls, ids, args.regions, args.changes, replicas)
            print(f"change -> all {args.regions} copies, meshd: {json.dumps(meshd)}")
            bare = asyncio.run(bare_propagation(urls, ids, args.regions, args.changes))
            print(f"change -> all {args.regions} watchers, bare nats-py: {json.dumps(bare)}")
            print(f"ratio p99 meshd/bare: {meshd['p99_ms'] / bare['p99_ms']:.2f}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
