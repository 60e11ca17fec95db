"""What health probing costs a daemon, and what keeping it off the event loop buys.

    python bench/health_probes.py [--duration 20] [--checks 200]

Part 1, event-loop lag: a 5 ms ticker on the event loop (standing for every
other plugin's work: SWIM probes, bus handlers) measures how late it wakes
while probes run every 100 ms: cpu, memory, disk, load, an HTTP probe of a
loopback server, a TCP probe and a command probe ("healthy" host); then the
same plus one "sick mount" probe whose blocking call takes 300 ms (a slow
statfs on a hung NFS mount). Each twice, side by side in one process:
  * offloaded: the health plugin as shipped (blocking calls in worker threads);
  * inline:    the same probes with their blocking calls made on the event
               loop, as a naive implementation would.
Prints the ticker's lateness p50 / p99 / max for each and the ratio
inline/offloaded.

Part 2, cost per check: each builtin kind checked --checks times in a row;
wall and CPU milliseconds per check (CPU includes the worker threads), and
what the default host probe set (cpu, memory, load every 10 s, disk every
30 s) costs as a percentage of one core.
"""

from __future__ import annotations

import argparse
import logging
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
from benchlib import machine_line as machine

from meshd import Metrics
from meshd_plugins.health.engine import ProbeRunner
from meshd_plugins.health.exposition import HealthMetrics
from meshd_plugins.health.kind_command import CommandProbe
from meshd_plugins.health.kind_host import CpuProbe, DiskProbe, LoadProbe, MemoryProbe
from meshd_plugins.health.kind_http import HttpProbe
from meshd_plugins.health.kind_tcp import TcpProbe
from meshd_plugins.health.probes import Probe, ProbeContext, ProbeResult
from meshd_plugins.health.settings import ResolvedProbe

TICK = 0.005
SICK_MOUNT_DELAY = 0.3


class InlineContext(ProbeContext):
    """The naive way: blocking calls made right on the event loop."""

    async def run_blocking(self, fn: Callable[[], Any], *, owner: str) -> Any:
        return fn()


class SickMountProbe(Probe):
    """A disk probe on a mount whose statfs takes SICK_MOUNT_DELAY seconds."""

    kind = "sick_mount"

    async def check(self) -> ProbeResult:
        await self.run_blocking(time.sleep, SICK_MOUNT_DELAY)
        return ProbeResult.ok()


class Quiet(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_a: Any) -> None:
        pass


def build(cls: type[Probe], context: ProbeContext, metrics: HealthMetrics, **settings: Any) -> ProbeRunner:
    s = cls.Settings.model_validate({"name": settings.pop("name", cls.kind), "kind": cls.kind, **settings})
    return ProbeRunner(ResolvedProbe(cls, s), context, metrics, logging.getLogger("bench"))


def probe_set(context: ProbeContext, http_port: int, tcp_port: int, interval: str) -> list[ProbeRunner]:
    metrics = HealthMetrics(Metrics())
    common = {"interval": interval, "timeout": "2s"}
    return [
        build(CpuProbe, context, metrics, **common),
        build(MemoryProbe, context, metrics, **common),
        build(DiskProbe, context, metrics, path="/", **common),
        build(LoadProbe, context, metrics, **common),
        build(HttpProbe, context, metrics, url=f"http://127.0.0.1:{http_port}/", **common),
        build(TcpProbe, context, metrics, host="127.0.0.1", port=tcp_port, **common),
        build(CommandProbe, context, metrics, command=["true"], **common),
        build(SickMountProbe, context, metrics, **common),
    ]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def loop_lag(context: ProbeContext, http_port: int, tcp_port: int, duration: float,
                   sick: bool) -> dict[str, float]:
    runners = probe_set(context, http_port, tcp_port, "100ms")
    if not sick:
        runners = [r for r in runners if r.kind != SickMountProbe.kind]
    late: list[float] = []
    checks = 0
    async with anyio.create_task_group() as tg:
        for r in runners:
            tg.start_soon(r.run, lambda: None)
        end = anyio.current_time() + duration
        while anyio.current_time() < end:
            due = anyio.current_time() + TICK
            await anyio.sleep(TICK)
            late.append(max(0.0, anyio.current_time() - due))
        checks = sum(r.checks for r in runners)
        tg.cancel_scope.cancel()
    return {"p50": pct(late, 0.50) * 1000, "p99": pct(late, 0.99) * 1000, "max": max(late) * 1000,
            "checks": checks}


async def cost(context: ProbeContext, http_port: int, tcp_port: int, n: int) -> list[tuple[str, float, float]]:
    rows = []
    for r in probe_set(context, http_port, tcp_port, "10s")[:-1]:  # not the sick mount
        await r.check_once()  # warm up (the cpu probe's first check samples for 0.25 s)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            await r.check_once()
        rows.append((r.kind, (time.perf_counter() - wall0) / n * 1000, (time.process_time() - cpu0) / n * 1000))
    return rows


async def amain(args: argparse.Namespace) -> None:
    web = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    tcp = socket.create_server(("127.0.0.1", 0))
    tcp.listen(512)

    def accept() -> None:
        while True:
            try:
                conn, _ = tcp.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    http_port, tcp_port = web.server_address[1], tcp.getsockname()[1]
    state = Path(tempfile.mkdtemp())

    def ctx(cls: type[ProbeContext]) -> ProbeContext:
        return cls(region="bench", state_dir=state, secret=lambda v: v, limiter=anyio.CapacityLimiter(8))

    print(f"# {time.strftime('%Y-%m-%d %H:%M')}  {machine()}")
    print(f"# command: python bench/health_probes.py --duration {args.duration:g} --checks {args.checks}")
    print()
    print(f"## Event-loop lag, {args.duration:g} s per run, probes every 100 ms, ticker every {TICK * 1000:.0f} ms")
    print()
    print("| host | mode | ticker late p50 (ms) | p99 (ms) | max (ms) | checks run |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    sick_label = f"sick mount (+1 probe blocking {SICK_MOUNT_DELAY * 1000:.0f} ms)"
    for sick, label in ((False, "healthy (7 probes)"), (True, sick_label)):
        off = await loop_lag(ctx(ProbeContext), http_port, tcp_port, args.duration, sick)
        inline = await loop_lag(ctx(InlineContext), http_port, tcp_port, args.duration, sick)
        for name, r in (("offloaded (shipped)", off), ("inline (naive)", inline)):
            print(f"| {label} | {name} | {r['p50']:.2f} | {r['p99']:.2f} | {r['max']:.2f} | {r['checks']:.0f} |")
        print(f"| {label} | ratio inline/offloaded | {inline['p50'] / max(off['p50'], 1e-3):.1f} | "
              f"{inline['p99'] / max(off['p99'], 1e-3):.1f} | {inline['max'] / max(off['max'], 1e-3):.1f} | |")
    print()
    print(f"## Cost per check ({args.checks} checks each, sequential)")
    print()
    rows = await cost(ctx(ProbeContext), http_port, tcp_port, args.checks)
    print("CPU is this process's (worker threads and the loopback HTTP/TCP servers included; a command's")
    print("own child process excluded).")
    print()
    print("| kind | wall ms/check | CPU ms/check |")
    print("| --- | ---: | ---: |")
    for kind, wall, cpu in rows:
        print(f"| {kind} | {wall:.3f} | {cpu:.3f} |")
    per = {kind: cpu for kind, _, cpu in rows}
    default = (per["cpu"] + per["memory"] + per["load"]) / 10.0 + per["disk"] / 30.0  # ms of CPU per s
    print()
    print(f"Default host probe set (cpu, memory, load /10 s; disk /30 s): {default / 10:.4f} % of one core "
          f"({default:.3f} ms CPU per second).")
    web.shutdown()
    tcp.close()
    subprocess.run(["true"], check=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of each event-loop lag run")
    ap.add_argument("--checks", type=int, default=200, help="checks per kind in the cost run")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    anyio.run(amain, args)


if __name__ == "__main__":
    main()
