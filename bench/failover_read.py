"""How long a starting daemon takes to read the failover bucket over a slow link: slot by slot
(each region in turn, one round trip per slot, as before issue 18) against one listing of the keys
and the slots fetched concurrently, at most ``FETCH_CONCURRENCY`` at a time (the failover plugin's
:class:`~meshd_plugins.failover.learning.Learner` now).

    python bench/failover_read.py [--slots 3] [--latency 80-150ms] [--rounds 5]

A real nats-server with JetStream; the reader connects through :class:`meshd.testing.TcpProxy`,
which holds every chunk for the given latency each way (bench/chaos.py's WAN profile by default).
The bucket holds ``--slots`` slots for each of the seven sample regions. Both patterns go through
the same :class:`meshd.transport.NatsTransport` KV API the plugin uses; the timings include no
decoding or audit logging (identical for both).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchlib import machine_line  # noqa: E402
from chaos_runner import parse_latency  # noqa: E402

from meshd.config import NatsConfig  # noqa: E402
from meshd.natsserver import NatsServer  # noqa: E402
from meshd.testing import TcpProxy  # noqa: E402
from meshd.transport import NatsTransport  # noqa: E402
from meshd_plugins.failover.learning import FETCH_CONCURRENCY  # noqa: E402
from meshd_plugins.failover.records import parse_slot_key, slot_key  # noqa: E402

REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ca-central-1", "me-south-1", "ap-southeast-1"]
BUCKET = "bench-failover-read"


async def slot_by_slot(kv: object) -> int:
    read = 0
    for region in REGIONS:
        term = 1
        while await kv.get(slot_key(region, term)) is not None:  # type: ignore[attr-defined]
            read += 1
            term += 1
    return read


async def listed_then_concurrent(kv: object) -> int:
    keys = [k for k in await kv.keys() if parse_slot_key(k) is not None]  # type: ignore[attr-defined]
    limiter = anyio.CapacityLimiter(FETCH_CONCURRENCY)
    values: list[bytes] = []

    async def fetch(key: str) -> None:
        async with limiter:
            entry = await kv.get(key)  # type: ignore[attr-defined]
            if entry is not None:
                values.append(entry.value)

    async with anyio.create_task_group() as tg:
        for key in keys:
            tg.start_soon(fetch, key)
    return len(values)


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="meshd-bench-read-") as tmp:
        server = NatsServer(Path(tmp) / "nats").start()
        proxy = TcpProxy(("127.0.0.1", server.port), latency=args.latency)
        direct = NatsTransport(NatsConfig(servers=[server.url]), name="filler")
        slow = NatsTransport(NatsConfig(servers=[proxy.url]), name="reader")
        try:
            await direct.connect()
            fill = await direct.key_value(BUCKET)
            for region in REGIONS:
                for term in range(1, args.slots + 1):
                    await fill.create(slot_key(region, term), b"x" * 2000)  # about a record's size
            await slow.connect()
            kv = await slow.key_value(BUCKET)
            timings: dict[str, list[float]] = {"slot by slot": [], "listing + concurrent": []}
            for _ in range(args.rounds):
                for name, pattern in (("slot by slot", slot_by_slot), ("listing + concurrent", listed_then_concurrent)):
                    began = time.perf_counter()
                    read = await pattern(kv)
                    timings[name].append(time.perf_counter() - began)
                    assert read == len(REGIONS) * args.slots, (name, read)
            low, high = args.latency
            print(f"# {machine_line()}")
            print(f"# {len(REGIONS)} regions x {args.slots} slots, latency {low * 1000:g}-{high * 1000:g} ms each way "
                  f"on the reader's link, {args.rounds} rounds, concurrency {FETCH_CONCURRENCY}")
            print("| pattern | median s | min s | max s |")
            print("| --- | --- | --- | --- |")
            for name, values in timings.items():
                print(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |")
        finally:
            await slow.close()
            await direct.close()
            proxy.close()
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=3, help="slots per region in the bucket (default 3)")
    parser.add_argument("--latency", type=parse_latency, default=(0.08, 0.15),
                        help="latency each way on the reader's link, e.g. 80-150ms (default)")
    parser.add_argument("--rounds", type=int, default=5)
    anyio.run(run, parser.parse_args())


if __name__ == "__main__":
    main()
