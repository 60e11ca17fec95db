"""Partner API throughput and latency on one core, side by side with a bare Starlette app on the same uvicorn.

One process serves both apps from one event loop pinned to CPU 0: the
partner API of an in-process daemon (real nats-server, KV tenant registry,
argon2id-hashed key) and a Starlette hello-world on the same uvicorn
settings. A load generator in a separate process pinned to CPU 1 sends
keep-alive HTTP/1.1 requests over raw sockets (a Python HTTP client would be
the bottleneck) and reports requests/s and latency percentiles.

    cd bench && ../.venv/bin/python partners_bench.py --rounds 3 --duration 5 --connections 16

Measured: authenticated ``GET /v1/tenants/{id}`` vs ``GET /`` of the bare
app (the ratio is the cost of auth, rate limit, routing and JSON), then
``POST /v1/tenants`` one at a time (a KV write, the watch round-trip and an
fsynced audit entry per create).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import machine_line


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


# ---------------------------------------------------------------- the load generator (its own process)

async def _connection(port: int, request: bytes, deadline: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            status = int(head.split(b" ", 2)[1])
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            if status != 200:
                raise RuntimeError(f"HTTP {status}: the benchmark's request is refused")
            latencies.append(time.perf_counter() - began)
    finally:
        writer.close()


async def _load(port: int, request: bytes, duration: float, connections: int) -> dict[str, Any]:
    latencies: list[float] = []
    warm_deadline = time.perf_counter() + 1.0
    await asyncio.gather(*(_connection(port, request, warm_deadline, []) for _ in range(connections)))
    began = time.perf_counter()
    await asyncio.gather(*(_connection(port, request, began + duration, latencies) for _ in range(connections)))
    elapsed = time.perf_counter() - began
    return {"requests": len(latencies), "rps": len(latencies) / elapsed,
            "p50_ms": pct(latencies, 50) * 1000, "p99_ms": pct(latencies, 99) * 1000}


def client_main(args: argparse.Namespace) -> None:
    os.sched_setaffinity(0, {1})
    request = bytes.fromhex(args.request_hex)
    print(json.dumps(asyncio.run(_load(args.port, request, args.duration, args.connections))))


def run_client(port: int, request: bytes, duration: float, connections: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--client", "--port", str(port), "--request-hex", request.hex(),
                          "--duration", str(duration), "--connections", str(connections)],
                         capture_output=True, text=True, timeout=duration + 60, check=True)
    return json.loads(out.stdout)


# ---------------------------------------------------------------- the servers (this process, CPU 0)

def http_request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    import anyio
    import httpx
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from meshd.natsserver import NatsServer, find_nats_server
    from meshd.testing import running_daemons, write_federation
    from meshd_plugins.partners.server import EmbeddedServer, bind, make_config, serve

    os.sched_setaffinity(0, {0})
    work = Path(tempfile.mkdtemp(prefix="partners-bench-"))
    server = NatsServer(work / "nats", binary=find_nats_server()).start()
    try:
        configs = write_federation(work, ["eu-west-1"], server.url, patch={
            "partners": {"enabled": True, "port": 0, "plans": ["pro"],
                         "rate_limit": {"per_second": 1e9, "burst": 1_000_000_000}},
            "tenants": {"registry": "kv"}})
        blocked = ["health", "failover", "routing", "alerts", "keys", "metering", "billing", "fencing"]
        async with running_daemons(configs, blocked=blocked) as daemons:
            daemon = daemons["eu-west-1"]
            rt = daemon.hooks.pm.get_plugin("partners").runtime
            await rt.store.add_partner("Bench", "bench")
            _, key = await rt.store.create_key("bench", "admin")
            auth = {"Authorization": f"Bearer {key}", "Meshd-Partner": "bench"}
            base = f"http://127.0.0.1:{rt.port}"

            async def hello(_request: Any) -> JSONResponse:
                return JSONResponse({"hello": "world"})

            bare = EmbeddedServer(make_config(Starlette(routes=[Route("/", hello)]), tls=None, grace=1))
            sock = bind("127.0.0.1", 0)
            bare_port = sock.getsockname()[1]
            async with anyio.create_task_group() as tg:
                await tg.start(serve, bare, sock)
                async with httpx.AsyncClient(base_url=base, headers=auth) as api:
                    r = await api.post("/v1/tenants", json={"name": "Bench", "region": "eu-west-1", "plan": "pro"})
                    r.raise_for_status()
                    tenant = r.json()["id"]
                    results: dict[str, Any] = {"partner_get": [], "bare_hello": []}
                    get = http_request("GET", f"/v1/tenants/{tenant}", auth)
                    hello_request = http_request("GET", "/", {})
                    # Alternated rounds: load from other work on the machine falls on both sides alike.
                    for _ in range(args.rounds):
                        results["partner_get"].append(await anyio.to_thread.run_sync(
                            run_client, rt.port, get, args.duration, args.connections))
                        results["bare_hello"].append(await anyio.to_thread.run_sync(
                            run_client, bare_port, hello_request, args.duration, args.connections))
                    create_ms = []
                    for i in range(args.creates):
                        began = time.perf_counter()
                        r = await api.post("/v1/tenants", json={"name": f"T{i}", "region": "eu-west-1",
                                                                "plan": "pro"})
                        create_ms.append((time.perf_counter() - began) * 1000)
                        assert r.status_code == 201, r.text
                    results["create"] = {"n": len(create_ms), "p50_ms": statistics.median(create_ms),
                                         "p99_ms": pct(create_ms, 99), "max_ms": max(create_ms)}
                bare.should_exit = True
            return results
    finally:
        server.stop()


def median_of(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    return {"rps": statistics.median(r["rps"] for r in rounds), "p50_ms": statistics.median(r["p50_ms"] for r in rounds),
            "p99_ms": statistics.median(r["p99_ms"] for r in rounds), "requests": sum(r["requests"] for r in rounds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of load per server and round")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds of each server (medians reported)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent keep-alive connections")
    parser.add_argument("--creates", type=int, default=300, help="sequential tenant creates timed")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--request-hex", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args)
        return
    import anyio

    print(f"partners_bench {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(machine_line())
    results = anyio.run(bench, args)
    g, b, c = median_of(results["partner_get"]), median_of(results["bare_hello"]), results["create"]
    print(f"server on one core (CPU 0), load generator on CPU 1, {args.connections} keep-alive connections, "
          f"{args.rounds} alternated rounds of {args.duration:g} s each; medians of the rounds")
    print(f"authenticated GET /v1/tenants/{{id}}: {g['rps']:,.0f} req/s, p50 {g['p50_ms']:.2f} ms, "
          f"p99 {g['p99_ms']:.2f} ms ({g['requests']} requests)")
    print(f"bare Starlette hello-world, same uvicorn: {b['rps']:,.0f} req/s, p50 {b['p50_ms']:.2f} ms, "
          f"p99 {b['p99_ms']:.2f} ms ({b['requests']} requests)")
    print(f"ratio (partner API / bare): {g['rps'] / b['rps']:.2f} throughput, {g['p99_ms'] / b['p99_ms']:.2f} p99")
    print(f"POST /v1/tenants, one at a time: p50 {c['p50_ms']:.2f} ms, p99 {c['p99_ms']:.2f} ms, "
          f"max {c['max_ms']:.2f} ms ({c['n']} creates)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
