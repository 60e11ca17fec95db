"""A full compliance audit of a 7-region federation: how long ``meshd audit`` waits.

    python bench/audit_bench.py [--regions 7] [--rounds 5]

A real nats-server and N in-process daemons with every builtin plugin (the
audit plugin offers all 23 checks, which read the other plugins' state, the
NATS server's permissions, the state dirs...). Each round times what
``meshd audit --evidence`` asks of its daemon: ``POST /v1/audit`` with
evidence, answered when every region has run its checks, signed its
evidence manifest and replied over the signed bus, and the merge and
scoring of five frameworks are done. In the same run, the baseline: one
region running the same checks alone (no bus, no merge), so the ratio shows
what federating costs over the slowest region's own checks.

The target (issue 15): a full audit of 7 regions in at most 10 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import yaml
from benchlib import machine_line

from meshd.daemon import admin_token
from meshd.natsserver import NatsServer, free_port
from meshd.testing import running_daemons, write_federation

REGIONS = ["eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ap-southeast-1", "me-south-1",
           "ca-central-1"]
TARGET = 10.0


def post(port: int, token: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/audit", data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                                 method="POST")
    with urllib.request.urlopen(req, timeout=120) as resp:
        return resp.status, json.loads(resp.read())


async def bench(regions: list[str], rounds: int) -> int:
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as tmp:
        tmp_path = Path(tmp)
        server = NatsServer(tmp_path / "nats").start()
        try:
            port = free_port()
            paths = write_federation(tmp_path, regions, server.url)
            data = yaml.safe_load(paths[regions[0]].read_text())
            data["http"] = {"port": port}
            paths[regions[0]].write_text(yaml.safe_dump(data, sort_keys=False))
            async with running_daemons(paths) as ds:
                asker = ds[regions[0]]
                token = admin_token(asker.state_dir)
                runtime = asker.hooks.pm.get_plugin("audit").runtime
                await anyio.sleep(1.0)  # let the daemons finish their first membership round
                times, local = [], []
                result: dict[str, Any] = {}
                for _ in range(rounds):
                    t0 = time.perf_counter()
                    status, result = await anyio.to_thread.run_sync(post, port, token, {"evidence": True})
                    times.append(time.perf_counter() - t0)
                    assert status == 200, result
                    t0 = time.perf_counter()
                    await runtime.run_local()
                    local.append(time.perf_counter() - t0)
                answered = sum(1 for r in result["regions"].values() if r["answered"])
                checks = {c["id"] for c in result["checks"]}
                statuses: dict[str, int] = {}
                for c in result["checks"]:
                    statuses[c["status"]] = statuses.get(c["status"], 0) + 1
                files = sum(len(b["documents"]) for b in result.get("evidence", {}).values())
                largest = max(len(json.dumps(b)) for b in result.get("evidence", {}).values())
        finally:
            server.stop()
    med, worst = statistics.median(times), max(times)
    base = statistics.median(local)
    print(f"# audit bench {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(f"# {machine_line()}")
    print(f"regions: {len(regions)} ({answered} answered), checks: {len(checks)}, results: "
          f"{sum(statuses.values())} {dict(sorted(statuses.items()))}, evidence files: {files}, "
          f"largest region's signed evidence: {largest / 1024:.1f} KiB (bus max payload 256 KiB)")
    print(f"full audit with evidence, {rounds} rounds: median {med:.3f} s, worst {worst:.3f} s "
          f"(all: {', '.join(f'{t:.3f}' for t in times)})")
    print(f"baseline, one region's checks alone (same run): median {base:.3f} s")
    print(f"ratio federation / one region: {med / base:.2f}")
    met = worst <= TARGET
    print(f"target: <= {TARGET:g} s for the worst round: {'met' if met else 'NOT met'}")
    return 0 if met else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--regions", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    return anyio.run(bench, REGIONS[: args.regions], args.rounds)


if __name__ == "__main__":
    sys.exit(main())
