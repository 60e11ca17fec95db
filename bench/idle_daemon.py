"""One idle `meshd run` process: its memory after READY, its CPU, and what wakes its event loop.

The step-by-step companion of membership_footprint.py (which runs seven
daemons): a federation of ``--regions`` daemons on one nats-server, every
one a real ``meshd run``, each with an event-loop wakeup counter set up
before meshd is imported. After all are READY and ``--settle`` seconds
have passed, the first region's daemon is measured over ``--window``
seconds:

- VmRSS, PSS and USS at the end of the window;
- CPU time (user + system), per thread;
- how many callbacks its event loop ran, by where the woken coroutine was
  waiting (file:line of the innermost frame), so a poll loop shows itself;
- with ``--modules``, how many modules it holds and the largest packages.

    python idle_daemon.py                       # every installed plugin, 1 region
    python idle_daemon.py --regions 3 --disable sla,audit
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from membership_common import machine

from meshd.testing import LocalFederation

REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ca-central-1", "me-south-1", "ap-southeast-1"]

# Runs in the daemon's interpreter before meshd: counts event-loop callbacks by where they resume.
# SIGUSR1 starts a window, SIGUSR2 writes what the window saw to the file in $MESHD_BENCH_WAKEUPS.
PROBE = r"""
import asyncio, collections, json, os, signal, sys

counts = collections.Counter()
started = [False]
_run = asyncio.events.Handle._run

def where(handle):
    cb = handle._callback
    task = getattr(cb, "__self__", None)
    coro = task.get_coro() if isinstance(task, asyncio.Task) else None
    if coro is None:
        code = getattr(cb, "__code__", None) or getattr(getattr(cb, "__func__", None), "__code__", None)
        return f"callback {getattr(cb, '__qualname__', repr(cb))}" + (
            f" ({code.co_filename.rsplit('/', 2)[-2:][-1]}:{code.co_firstlineno})" if code else "")
    own = last = None  # the innermost frame of meshd's own code (a library's sleep says nothing of who called it)
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        last = frame
        if "/site-packages/" not in frame.f_code.co_filename and "/lib/python3" not in frame.f_code.co_filename:
            own = frame
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    frame = own or last
    if frame is None:
        return f"task {task.get_name()}"
    path = "/".join(frame.f_code.co_filename.split("/")[-2:])
    return f"{path}:{frame.f_lineno} {frame.f_code.co_name}"

def counting(self):
    if started[0]:
        try:
            counts[where(self)] += 1
        except Exception as exc:
            counts[f"? {type(exc).__name__}"] += 1
    return _run(self)

asyncio.events.Handle._run = counting

profiler = None

def start(*_):
    global profiler
    counts.clear()
    started[0] = True
    if os.environ.get("MESHD_BENCH_PROFILE"):
        import cProfile
        import time
        profiler = cProfile.Profile(time.thread_time)
        profiler.enable()

def dump(*_):
    started[0] = False
    by_file, calls, cumulative = collections.Counter(), collections.Counter(), collections.Counter()
    if profiler is not None:
        profiler.disable()
        import pstats
        for (path, line, name), (_cc, nc, tt, ct, _callers) in pstats.Stats(profiler).stats.items():
            if "epoll" not in name:  # the idle wait itself
                key = name if path == "~" else "/".join(path.split("/")[-2:])
                by_file[key] += tt
                calls[key] += nc
                if path != "~" and "/site-packages/" not in path and "/lib/python3" not in path:
                    cumulative[f"{key}:{line} {name}"] = ct
    mods = collections.Counter(m.split(".")[0] for m in list(sys.modules))
    with open(os.environ["MESHD_BENCH_WAKEUPS"], "w") as f:
        json.dump({"wakeups": counts.most_common(), "modules": len(sys.modules),
                   "packages": mods.most_common(), "names": sorted(sys.modules),
                   "profile": [(k, t, calls[k]) for k, t in by_file.most_common(40)],
                   "cumulative": cumulative.most_common(40)}, f)

signal.signal(signal.SIGUSR1, start)
signal.signal(signal.SIGUSR2, dump)

from meshd.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def memory(pid: int) -> dict[str, float]:
    mem = psutil.Process(pid).memory_full_info()
    return {"rss": mem.rss / 2**20, "pss": mem.pss / 2**20, "uss": mem.uss / 2**20}


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of ``pid``."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regions", type=int, default=1, help="daemons in the federation (1-7); the first is measured")
    parser.add_argument("--disable", default="", help="comma-separated plugins to disable (plugins.disabled)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after READY before the window")
    parser.add_argument("--window", type=float, default=10.0, help="seconds of CPU and wakeup counting")
    parser.add_argument("--top", type=int, default=25, help="wakeup sites printed")
    parser.add_argument("--modules", action="store_true", help="print the module count and largest packages")
    parser.add_argument("--profile", action="store_true",
                        help="profile the window (cProfile in thread CPU time, event-loop thread) and print own time by file")
    parser.add_argument("--names", help="write the names of the modules the daemon holds to this file")
    args = parser.parse_args()
    regions = REGIONS[:args.regions]
    disabled = [p for p in args.disable.split(",") if p]
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; {machine()}", flush=True)
    print(f"# {' '.join(sys.argv)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        fed = LocalFederation(Path(tmp), regions=regions, config={"plugins": {"disabled": disabled}})
        dump = Path(tmp) / "wakeups.json"
        try:
            fed.start(daemons=False)
            for region in regions:
                env = {**os.environ, "PYTHONUNBUFFERED": "1", "MESHD_BENCH_WAKEUPS": str(dump),
                       **({"MESHD_BENCH_PROFILE": "1"} if args.profile else {})}
                log = open(fed.logs / f"{region}.log", "ab")
                fed.procs[region] = subprocess.Popen(
                    [sys.executable, "-c", PROBE, "run", "--config", str(fed.config_path(region)),
                     "--log-format", "json"],
                    stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
                log.close()
            for region in regions:
                fed.wait_ready(region, timeout=120)
            if len(regions) > 1:
                fed.wait_for(lambda: all(fed.member_state(o, r) == "alive" for o in regions for r in regions
                                         if r != o), 60, what="convergence")
            plugins = (fed.status(regions[0]) or {}).get("plugins", [])
            time.sleep(args.settle)
            pid = fed.procs[regions[0]].pid
            ready_mem = memory(pid)
            os.kill(pid, signal.SIGUSR1)
            before = thread_cpu(pid)
            t0 = time.monotonic()
            time.sleep(args.window)
            after = thread_cpu(pid)
            wall = time.monotonic() - t0
            os.kill(pid, signal.SIGUSR2)
            fed.wait_for(lambda: dump.exists() and dump.stat().st_size > 0, 10, what="wakeup dump")
            time.sleep(0.2)  # the dump is written in one call; let it finish
            seen = json.loads(dump.read_text())
            end_mem = memory(pid)
        finally:
            fed.stop()
    print(f"# after: {machine()}")
    print(f"# plugins: {', '.join(plugins)}")
    print(f"# disabled: {', '.join(disabled) or 'none'}\n")
    print(f"memory {args.settle:.0f} s after READY: RSS {ready_mem['rss']:.2f} MiB, PSS {ready_mem['pss']:.2f}, "
          f"USS {ready_mem['uss']:.2f}")
    print(f"memory after the window:  RSS {end_mem['rss']:.2f} MiB ({end_mem['rss'] * 2**20 / 1e6:.2f} MB), "
          f"PSS {end_mem['pss']:.2f}, USS {end_mem['uss']:.2f}")
    total = sum(after.get(t, 0) - before.get(t, 0) for t in after)
    print(f"CPU over {wall:.1f} s: {total / wall * 100:.3f} % of one core "
          f"(threads: {len(after)}; per thread, %: "
          + ", ".join(f"{(after[t] - before.get(t, 0)) / wall * 100:.2f}" for t in sorted(after)) + ")")
    wakeups = seen["wakeups"]
    print(f"event-loop callbacks: {sum(n for _, n in wakeups)} in {wall:.1f} s "
          f"({sum(n for _, n in wakeups) / wall:.1f}/s); by where they resume:")
    for site, n in wakeups[:args.top]:
        print(f"  {n / wall:8.2f}/s  {site}")
    if args.modules:
        print(f"\nmodules: {seen['modules']}; largest top-level packages:")
        print("  " + ", ".join(f"{name} {n}" for name, n in seen["packages"][:30]))
    if args.profile:
        print(f"\nown CPU time by file over the window (cProfile, its overhead included), top {args.top}:")
        for path, seconds, ncalls in seen["profile"][:args.top]:
            print(f"  {seconds / wall * 100:6.3f} %  {ncalls / wall:9.1f} calls/s  {path}")
        print(f"\nmeshd's own functions by cumulative CPU time over the window, top {args.top}:")
        for function, seconds in seen["cumulative"][:args.top]:
            print(f"  {seconds / wall * 100:6.3f} %  {function}")
    if args.names:
        Path(args.names).write_text("\n".join(seen["names"]) + "\n")


if __name__ == "__main__":
    main()
