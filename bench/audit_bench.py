"""A full compliance audit of a 7-region federation: how long ``meshd audit`` waits.

    python bench/audit_bench.py [--regions 7] [--rounds 5] [--tls]

A real nats-server and N in-process daemons with every builtin plugin (the
audit plugin offers all 23 checks, which read the other plugins' state, the
NATS server's permissions, the state dirs...). Each round times what
``meshd audit --evidence`` asks of its daemon: ``POST /v1/audit`` with
evidence, answered when every region has run its checks, signed its
evidence manifest and replied over the signed bus, and the merge and
scoring of five frameworks are done. In the same run, the baseline: one
region running the same checks alone (no bus, no merge), so the ratio shows
what federating costs over the slowest region's own checks.

``--tls``: the bus hardened as the audit wants it, so that the checks that
talk to NATS (the permission probes, the TLS handshake facts) do their full
work instead of failing fast: nats-server over TLS verified against a test
CA, one NATS user per region allowed only its own subjects.

The target (issue 15): a full audit of 7 regions in at most 10 s.
"""

from __future__ import annotations

import argparse
import json
import secrets
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
from meshd.natsserver import NatsServer, TlsFiles, authorization_block, free_port
from meshd.testcerts import make_certs
from meshd.testing import deep_merge, running_daemons, write_federation

REGIONS = ["eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ap-southeast-1", "me-south-1",
           "ca-central-1"]
TARGET = 10.0


def post(port: int, token: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/audit", data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                                 method="POST")
    with urllib.request.urlopen(req, timeout=120) as resp:
        return resp.status, json.loads(resp.read())


def hardened_bus(tmp_path: Path, regions: list[str]) -> tuple[NatsServer, dict[str, dict[str, Any]]]:
    """A TLS-only nats-server with a user per region, and each region's ``nats:`` settings for it."""
    certs = make_certs(tmp_path / "tls")
    passwords = {r: secrets.token_urlsafe(18) for r in regions}
    server = NatsServer(tmp_path / "nats", tls=TlsFiles(certs.cert, certs.key),
                        authorization=authorization_block("test", passwords))
    return server, {r: {"servers": [server.url], "user": r, "password": passwords[r],
                        "tls": {"ca_file": str(certs.ca)}} for r in regions}


async def bench(regions: list[str], rounds: int, tls: bool) -> int:
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as tmp:
        tmp_path = Path(tmp)
        server, nats = hardened_bus(tmp_path, regions) if tls else (NatsServer(tmp_path / "nats"), {})
        server.start()
        try:
            port = free_port()
            paths = write_federation(tmp_path, regions, server.url)
            for region, path in paths.items():
                data = yaml.safe_load(path.read_text())
                if region == regions[0]:
                    data["http"] = {"port": port}
                if region in nats:
                    data = deep_merge(data, {"nats": nats[region]})
                path.write_text(yaml.safe_dump(data, sort_keys=False))
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
    print(f"# audit bench {datetime.now(UTC).isoformat(timespec='seconds')}"
          f"{' (--tls: TLS bus, a NATS user per region)' if tls else ''}")
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
    parser.add_argument("--tls", action="store_true", help="a TLS bus with one NATS user per region")
    args = parser.parse_args()
    return anyio.run(bench, REGIONS[: args.regions], args.rounds, args.tls)


if __name__ == "__main__":
    sys.exit(main())
