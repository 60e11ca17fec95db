"""Bus cost of membership per daemon at 7 to 250 members: it must not grow with the federation.

For each size a federation of that many regions is written (a generated
region map), one nats-server started, and the daemons run in a few worker
processes (several daemons per process, membership plugin only). Once every
daemon sees every other alive, each daemon's membership messages (sent and
received, every type including replies) and all its verified bus envelopes
are counted over ``--window`` seconds.

    python bench/membership_bus.py                    # 7, 25, 50, 100, 250 members
    python bench/membership_bus.py --sizes 7 25 --window 20

Detection at scale (``--kills K``): K daemons run alone in their own
process; after the window each is SIGKILLed in turn and every other daemon
reports when it saw the victim dead (first and last observer, from the
kill). False deaths under load (``--hog``): the window runs with every core
saturated by busy loops; any daemon declared suspect or dead during it is
a false positive, since nothing is killed until the window ends:

    python bench/membership_bus.py --sizes 25 100 250 --kills 3
    python bench/membership_bus.py --sizes 100 --window 300 --hog   # the 5-minute false-death run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from membership_common import cpu_hog, machine, table

from meshd.natsserver import NatsServer
from meshd.testing import BUILTIN_PLUGINS, deep_merge

OTHERS = [p for p in BUILTIN_PLUGINS if p != "membership"]


def write_federation(workdir: Path, size: int, nats_url: str) -> list[Path]:
    from meshd.bootstrap import init_federation

    regions = {f"r{i:02d}": {"location": f"site {i}", "coordinates": {"lat": -60 + (i * 7) % 120, "lon": -170 + (i * 6) % 340},
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


def worker(paths: list[str], size: int, settle: float, window: float, converge_timeout: float) -> None:
    import anyio

    from meshd.members import MemberState
    from meshd.testing import running_daemons

    async def run() -> None:
        configs = {Path(p).stem: Path(p) for p in paths}
        async with running_daemons(configs, blocked=OTHERS) as daemons:
            def converged() -> bool:
                return all(len(d.hooks.pm.get_plugin("membership").swim.table.in_states(MemberState.ALIVE))
                           == size - 1 for d in daemons.values())

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

            def stalls() -> float:
                return sum(s.value for d in daemons.values() for m in d.metrics.registry.collect()
                           if m.name == "meshd_membership_loop_stalls" for s in m.samples
                           if s.name.endswith("_total"))

            began = time.monotonic()
            deadline = began + converge_timeout  # on a loaded machine a large federation takes minutes
            while not converged():
                if time.monotonic() > deadline:
                    raise SystemExit("no convergence")
                await anyio.sleep(0.2)
            # What the join itself cost, until this process's daemons all saw everyone alive.
            join = {"seconds": time.monotonic() - began, "types": by_type(), "daemons": len(daemons)}
            # The driver starts the window (and the CPU hog, if any) once every worker has joined, so a
            # hog measures a converged federation under load, not a join starved of CPU.
            print("joined", flush=True)
            if (await anyio.to_thread.run_sync(sys.stdin.readline)).strip() != "go":
                return
            await anyio.sleep(settle)

            def sample() -> dict[str, tuple[float, float, float]]:
                out = {}
                for r, d in daemons.items():
                    reg = d.metrics.registry
                    mem = sum(s.value for m in reg.collect() if m.name == "meshd_membership_messages"
                              for s in m.samples if s.name.endswith("_total"))
                    env = sum(s.value for m in reg.collect() if m.name in ("meshd_envelopes_sent",
                                                                          "meshd_envelopes_received")
                              for s in m.samples if s.name.endswith("_total"))
                    changes = [(s.labels.get("state"), s.value) for m in reg.collect()
                               if m.name == "meshd_membership_transitions" for s in m.samples
                               if s.name.endswith("_total")]
                    out[r] = (mem, env, sum(v for st, v in changes if st in ("dead", "suspect")),
                              sum(v for st, v in changes if st == "dead"))
                return out

            before, types0, t0 = sample(), by_type(), time.monotonic()
            await anyio.sleep(window)
            after, types1, wall = sample(), by_type(), time.monotonic() - t0
            result = {r: {"membership_msgs_per_s": (after[r][0] - before[r][0]) / wall,
                          "envelopes_per_s": (after[r][1] - before[r][1]) / wall,
                          "suspect_or_dead": after[r][2] - before[r][2],
                          "dead": after[r][3] - before[r][3]} for r in daemons}
            result["_types"] = {k: (v - types0.get(k, 0.0)) / wall / len(daemons) for k, v in types1.items()}
            result["_join"] = join
            print(json.dumps(result), flush=True)
            # Keep running until every worker has measured: a leave would show up in their windows. Then
            # answer the driver's kills: when did each of this process's daemons see the victim dead?
            while True:
                line = (await anyio.to_thread.run_sync(sys.stdin.readline)).split()
                if not line or line[0] != "dead":
                    return
                victim, killed = line[1], float(line[2])
                types_before, stalls_before = by_type(), stalls()
                seen: dict[str, float] = {}
                deadline = time.monotonic() + 120
                while len(seen) < len(daemons) and time.monotonic() < deadline:
                    for r, d in daemons.items():
                        member = d.hooks.pm.get_plugin("membership").swim.table.get(victim)
                        if r not in seen and member is not None and member.state == MemberState.DEAD:
                            seen[r] = time.time()
                    await anyio.sleep(0.01)
                # What the detection cost, from the kill until this process's last daemon saw it dead.
                spent = {k: v - types_before.get(k, 0.0) for k, v in by_type().items()}
                print(json.dumps({"first": min(seen.values(), default=killed) - killed,
                                  "all": max(seen.values(), default=killed) - killed,
                                  "missing": len(daemons) - len(seen), "daemons": len(daemons),
                                  "types": {k: v for k, v in spent.items() if v}, "stalls": stalls() - stalls_before}),
                      flush=True)

    anyio.run(run, backend="asyncio")


# ---------------------------------------------------------------- driver


def measure(size: int, per_process: int, settle: float, window: float, kills: int = 0,
            hog: bool = False, converge_timeout: float = 300.0,
            ) -> tuple[dict[str, dict[str, float]], list[dict[str, float]]]:
    """Per-daemon rates over the window, and per kill the detection times (first, all) in seconds."""
    with tempfile.TemporaryDirectory(prefix=f"bench-bus-{size}-") as tmp:
        server = NatsServer(Path(tmp) / "nats").start()
        try:
            paths = write_federation(Path(tmp), size, server.url)
            victims, rest = paths[:kills], paths[kills:]
            workers = max(1, -(-len(rest) // per_process))
            chunks = [[v] for v in victims] + [c for c in (rest[i::workers] for i in range(workers)) if c]
            procs = [subprocess.Popen([sys.executable, __file__, "--worker", str(size), str(settle), str(window),
                                       str(converge_timeout), *map(str, chunk)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                     for chunk in chunks]
            for p in procs:
                if p.stdout.readline().strip() != "joined":  # type: ignore[union-attr]
                    raise SystemExit(f"a worker of the {size}-member federation failed to join")
            with cpu_hog() if hog else contextlib.nullcontext():
                for p in procs:
                    p.stdin.write("go\n")  # type: ignore[union-attr]
                    p.stdin.flush()  # type: ignore[union-attr]
                lines = [p.stdout.readline() for p in procs]  # type: ignore[union-attr]
            detections = []
            for k, victim in enumerate(victims):
                killed = time.time()
                procs[k].kill()
                procs[k].wait()
                others = procs[len(victims):] + procs[k + 1:len(victims)]
                for p in others:
                    p.stdin.write(f"dead {victim.stem} {killed}\n")  # type: ignore[union-attr]
                    p.stdin.flush()  # type: ignore[union-attr]
                answers = [json.loads(p.stdout.readline()) for p in others]  # type: ignore[union-attr]
                observers = sum(a["daemons"] for a in answers)
                spent: dict[str, float] = {}
                for a in answers:
                    for key, count in a["types"].items():
                        spent[key] = spent.get(key, 0.0) + count / observers
                detections.append({"first": min(a["first"] for a in answers), "all": max(a["all"] for a in answers),
                                   "missing": sum(a["missing"] for a in answers),
                                   "stalls": sum(a["stalls"] for a in answers),
                                   "events": spent.get("out event", 0.0) * observers,
                                   "gossip": spent.get("out gossip", 0.0) * observers})
                print(f"{size} members, kill {k + 1}/{kills} {victim.stem}: first {detections[-1]['first']:.2f} s, "
                      f"all {detections[-1]['all']:.2f} s; {detections[-1]['stalls']:.0f} loop stalls; "
                      "membership messages per observer until the last saw it dead: "
                      + ", ".join(f"{key} {v:.1f}" for key, v in sorted(spent.items()) if v >= 0.05), flush=True)
            for p in procs[len(victims):]:
                p.communicate("stop\n", timeout=60)
                if p.returncode:
                    raise SystemExit(f"worker failed ({p.returncode})")
            results: dict[str, dict[str, float]] = {}
            types: dict[str, float] = {}
            join_seconds, join_types = 0.0, dict[str, float]()
            for line, chunk in zip(lines, chunks):
                part = json.loads(line)
                join = part.pop("_join")
                join_seconds = max(join_seconds, join["seconds"])
                for key, count in join["types"].items():
                    join_types[key] = join_types.get(key, 0.0) + count / size
                for key, rate in part.pop("_types").items():  # per-daemon rates, weighted by daemons
                    types[key] = types.get(key, 0.0) + rate * len(chunk) / size
                results.update(part)
            results["_types"] = types
            results["_join"] = {"seconds": join_seconds, "types": join_types}
            return results, detections
        finally:
            server.stop()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[6:], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[7, 25, 50, 100, 250])
    parser.add_argument("--per-process", type=int, default=10, help="daemons per worker process")
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--kills", type=int, default=0, help="daemons SIGKILLed one after another after the window")
    parser.add_argument("--hog", action="store_true", help="saturate every core with busy loops during the window")
    parser.add_argument("--converge-timeout", type=float, default=300.0,
                        help="seconds the daemons may take to all see each other alive before the run is given up")
    args = parser.parse_args()
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; {machine()}", flush=True)
    rows, detect_rows = [], []
    for size in args.sizes:
        res, detections = measure(size, args.per_process, args.settle, args.window, args.kills, args.hog,
                                  args.converge_timeout)
        workers = args.kills + max(1, -(-(size - args.kills) // args.per_process))
        types = res.pop("_types")
        join = res.pop("_join")
        print(f"{size} members, join: every worker converged within {join['seconds']:.1f} s, "
              f"{sum(join['types'].values()):.0f} membership messages per daemon until then ("
              + ", ".join(f"{k} {v:.0f}" for k, v in sorted(join["types"].items()) if v >= 0.5) + ")", flush=True)
        print(f"{size} members, per daemon by type: "
              + ", ".join(f"{k} {v:.2f}/s" for k, v in sorted(types.items()) if v >= 0.005), flush=True)
        mem = [r["membership_msgs_per_s"] for r in res.values()]
        env = [r["envelopes_per_s"] for r in res.values()]
        bad = sum(r["suspect_or_dead"] for r in res.values())
        dead = sum(r["dead"] for r in res.values())
        rows.append([size, workers, statistics.fmean(mem), max(mem), statistics.fmean(env), max(env), int(bad),
                     int(dead)])
        if detections:
            detect_rows.append([size, len(detections), statistics.median(d["first"] for d in detections),
                                statistics.median(d["all"] for d in detections), max(d["all"] for d in detections),
                                " / ".join(f"{d['first']:.2f}-{d['all']:.2f}" for d in detections),
                                statistics.median(d["events"] for d in detections),
                                statistics.median(d["gossip"] for d in detections),
                                int(sum(d["stalls"] for d in detections)), int(sum(d["missing"] for d in detections))])
        print(f"{size} members: {statistics.fmean(mem):.2f} membership msgs/s per daemon", flush=True)
    print(f"# after: {machine()}\n")
    print(f"window {args.window:g} s{', every core saturated' if args.hog else ''}")
    print(table(["members", "processes", "membership msgs/s per daemon, mean", "max",
                 "bus envelopes/s per daemon, mean", "max", "suspect/dead transitions", "dead"], rows))
    if detect_rows:
        print("\ndetection of a SIGKILLed daemon (seconds from the kill):")
        print(table(["members", "kills", "first observer, median", "last observer, median", "last, max",
                     "first-last per kill", "event broadcasts per kill, median", "gossip messages per kill, median",
                     "loop stalls", "observers that never saw it"], detect_rows))


if __name__ == "__main__":
    main()
