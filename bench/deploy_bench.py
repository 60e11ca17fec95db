"""Canary rollouts through a real HAProxy: how fast a broken canary loses its traffic, how exact each step is.

    python bench/deploy_bench.py [--rollbacks 5] [--requests 2000]

Two measurements (issue 14), each beside a baseline of the same run:

* **Rollback time**: a real daemon (in-process, on a real nats-server) runs
  a rollout at 25 %; the canary starts answering 500 to every request; the
  first failed check rolls it back. Measured at the client, through HAProxy:
  from the instant of the reading that broke the threshold (the check's
  ``at`` in the audit trail) to the last response served by the canary.
  Baseline: the same client and HAProxy, with the weights set by hand on the
  admin socket (the floor HAProxy itself sets). Target: at most 2 s.
* **Step accuracy**: for each step (5, 10, 25, 50, 100 %), the share of
  ``--requests`` requests the canary served after the haproxy driver set the
  weights. Baseline: the same share with the weights set by hand. Target:
  within 2 percentage points of the step.

The rollbacks run twice in the same run: judged from HAProxy's counters
(``analysis.source: driver``), then from a real Prometheus scraping the
services every second (``source: prometheus``), to compare how long each
takes to see the failure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import yaml
from benchlib import machine_line
from haproxy_lab import Client, HAProxy, Version
from prometheus_lab import Prometheus, canary_queries

from meshd.deploydriver import TrafficStep
from meshd.natsserver import NatsServer
from meshd.testing import running_daemons, until, write_federation

REGION = "eu-west-1"
STEPS = [5, 10, 25, 50, 100]


class Recorder:
    """Client threads through HAProxy: the wall-clock time of each answer and which version gave it."""

    def __init__(self, port: int, threads: int = 3):
        self.answers: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(port,), daemon=True) for _ in range(threads)]
        for thread in self.threads:
            thread.start()

    def _run(self, port: int) -> None:
        client = Client(port)
        while not self.stop.is_set():
            version, _ = client.get()
            with self.lock:
                self.answers.append((time.time(), version))
        client.close()

    def last_canary_after(self, since: float) -> float | None:
        with self.lock:
            times = [t for t, v in self.answers if v == "canary" and t >= since]
        return max(times) if times else None

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)


def share(proxy: HAProxy, n: int) -> float:
    client = Client(proxy.port)
    try:
        return 100 * client.share(n)["canary"] / n
    finally:
        client.close()


def set_by_hand(proxy: HAProxy, weight: int) -> None:
    proxy.admin(f"set weight api/stable {100 - weight}")
    proxy.admin(f"set weight api/canary {weight}")


async def step_accuracy(proxy: HAProxy, driver: Any, n: int) -> list[tuple[int, float, float]]:
    rows = []
    for weight in STEPS:
        await driver.apply(TrafficStep("api", REGION, "v2", weight))
        meshd_share = await anyio.to_thread.run_sync(share, proxy, n)
        set_by_hand(proxy, weight)
        hand_share = await anyio.to_thread.run_sync(share, proxy, n)
        rows.append((weight, meshd_share, hand_share))
    return rows


def baseline_rollback(proxy: HAProxy, recorder: Recorder) -> float:
    set_by_hand(proxy, 25)
    time.sleep(1.0)  # let traffic settle on the new weights before the cut
    cut = time.time()
    proxy.admin("set weight api/stable 100")
    proxy.admin("set weight api/canary 0")
    time.sleep(1.0)  # in-flight canary answers arrive within this
    last = recorder.last_canary_after(cut)
    return max(0.0, (last or cut) - cut)


def write_pipeline(path: Path, proxy: HAProxy, analysis: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump({
        "defaults": {"steps": [25, 100], "bake": "1h", "progress_deadline": "1h", "smoke": False,
                     "analysis": {"interval": "500ms", "min_requests": 20, "failure_limit": 1, **analysis}},
        "services": {"api": {"stages": [{"regions": [REGION]}], "drivers": {REGION: {
            "kind": "haproxy", "socket": str(proxy.socket), "backend": "api"}}}}}))


async def rollbacks(rt: Any, proxy: HAProxy, canary: Version, recorder: Recorder, n: int, tag: str
                    ) -> tuple[list[float], list[float]]:
    """``n`` rollouts whose canary turns to 500s at 25 %: (check -> last canary answer, flip -> that check)."""
    ours, detect = [], []
    for i in range(n):
        canary.error_rate, canary.build = 0.0, f"{tag}{i}"
        rollout = await rt.start_rollout("api", canary.build, REGION, False)
        await until(lambda: proxy.weights()["canary"] == 25, timeout=30, what="the 25 % step")
        await until(lambda: _passed(rt), timeout=30, what="a passing check at 25 %")
        canary.error_rate = 1.0
        flipped = time.time()
        got = await until(lambda: _ended(rt), timeout=60, what="the rollback")
        await anyio.sleep(1.0)
        assert got.id == rollout.id and got.state == "rolled_back", (got.state, got.reason)
        check = got.log[-1]["data"]["check"]
        last = recorder.last_canary_after(check["at"])
        ours.append(max(0.0, (last or check["at"]) - check["at"]))
        detect.append(check["at"] - flipped)
        canary.error_rate = 0.0
        set_by_hand(proxy, 0)
    return ours, detect


async def main_async(args: argparse.Namespace) -> int:
    print(machine_line())
    work = Path(tempfile.mkdtemp(prefix="deploy-bench-"))
    stable, canary = Version("stable"), Version("canary")
    proxy = HAProxy(work / "haproxy", stable, canary)
    prom = Prometheus(work / "prometheus", {"stable": stable.port, "canary": canary.port})
    nats = NatsServer(work / "nats").start()
    recorder: Recorder | None = None
    try:
        pipeline = work / "region_pipeline.yaml"
        write_pipeline(pipeline, proxy, {})
        configs = write_federation(work, [REGION], nats.url, patch={"deploy": {"pipeline": str(pipeline),
                                                                                 "tick": "50ms"}})
        blocked = ("partners", "billing", "metering", "audit", "routing", "failover", "fencing")
        async with running_daemons(configs, blocked=blocked) as daemons:
            rt = daemons[REGION].hooks.pm.get_plugin("deploy").runtime
            await until(lambda: rt.store is not None, what="the rollout bucket")
            rows = await step_accuracy(proxy, rt.driver(rt.pipeline.plan("api"), REGION), args.requests)
            set_by_hand(proxy, 0)
            recorder = Recorder(proxy.port)
            ours, detect = await rollbacks(rt, proxy, canary, recorder, args.rollbacks, "driver-")
            theirs = []
            for _ in range(args.rollbacks):
                theirs.append(await anyio.to_thread.run_sync(baseline_rollback, proxy, recorder))
                set_by_hand(proxy, 0)
            # The same rollbacks judged by Prometheus (1 s scrapes, a 3 s rate window) instead of HAProxy's counters.
            await anyio.to_thread.run_sync(prom.wait_ready)
            write_pipeline(pipeline, proxy, {"source": "prometheus", "prometheus": canary_queries(prom.url)})
            rt.reload()
            prom_ours, prom_detect = await rollbacks(rt, proxy, canary, recorder, args.rollbacks, "prom-")
    finally:
        if recorder is not None:
            recorder.close()
        prom.stop()
        proxy.stop()
        stable.close()
        canary.close()
        nats.stop()

    print(f"\nstep accuracy, {args.requests} requests per step (canary share, percent)")
    print("step | meshd driver | by hand (baseline) | |error| meshd")
    for weight, ours_share, hand in rows:
        print(f"{weight:>4} | {ours_share:12.2f} | {hand:18.2f} | {abs(ours_share - weight):.2f} pp")
    worst = max(abs(s - w) for w, s, _ in rows)
    print(f"worst error {worst:.2f} pp (target <= 2 pp: {'met' if worst <= 2 else 'NOT met'})")
    print(f"\nrollback: failed check -> last canary answer at the client, {args.rollbacks} rollbacks per source")
    print(f"meshd, driver source:     median {statistics.median(ours) * 1000:.1f} ms, max {max(ours) * 1000:.1f} ms")
    print(f"meshd, prometheus source: median {statistics.median(prom_ours) * 1000:.1f} ms, "
          f"max {max(prom_ours) * 1000:.1f} ms")
    print(f"by hand:  median {statistics.median(theirs) * 1000:.1f} ms, max {max(theirs) * 1000:.1f} ms")
    print(f"meshd over the floor (median): {(statistics.median(ours) - statistics.median(theirs)) * 1000:.1f} ms; "
          f"worst as a share of the 2 s target: {max(ours + prom_ours) / 2:.3f}")
    print(f"target <= 2 s: {'met' if max(ours + prom_ours) <= 2 else 'NOT met'}")
    print("(before that: canary starts failing -> the check that sees it, 0.5 s analysis interval)")
    print(f"detection, driver source:     median {statistics.median(detect):.2f} s, max {max(detect):.2f} s")
    print(f"detection, prometheus source: median {statistics.median(prom_detect):.2f} s, max {max(prom_detect):.2f} s"
          f" (ratio of medians to the driver's: {statistics.median(prom_detect) / statistics.median(detect):.1f})")
    return 0


async def _passed(rt: Any) -> bool:
    got = await rt.store.get("api")
    return bool(got and got[0].active and any(e["kind"] == "check_passed" for e in got[0].log))


async def _ended(rt: Any) -> Any:
    got = await rt.store.get("api")
    return got[0] if got and not got[0].active else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollbacks", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    return anyio.run(main_async, args)


if __name__ == "__main__":
    sys.exit(main())
