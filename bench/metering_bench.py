"""Metering throughput and crash recovery, measured side by side in one run.

    python bench/metering_bench.py                    # full run (~3-5 minutes on 2 cores)
    python bench/metering_bench.py --quick --rounds 1 # smaller counts, for a smoke test

What it measures (every figure from this one run, so ratios are comparable):

1. ledger     validate + count in SQLite, no NATS: plaintext vs keyring-encrypted rows
2. anchors    bare JetStream acked publishes of single 128-byte messages, pipelined
              (the ceiling a one-event-per-message design would hit)
3. ingest     one real daemon process consuming its region's stream into its ledger:
              - backlog: events published while the daemon is paused, then drained
              - live:    events published while the daemon consumes, until all are counted
              for batches of 500 events per message (plaintext and keyring), 100 and 1;
              each case --rounds times into the same daemon: best and median
4. sigkill    a backlog, SIGKILL of the daemon mid-drain, restart: the ledger total must
              equal the events sent, exactly; reports the catch-up time
5. workers    (--workers 1,2) the same backlog drained by 1 ingesting process (one
              partition, the daemon) and by 2 (two partitions: the daemon ingests
              partition 0, a `meshd ingest` process partition 1), rounds interleaved;
              the ratio of the medians, and the CPU seconds of every process
              (nats-server included) during each drain

    python bench/metering_bench.py --only workers --workers 1,2 --rounds 5

6. ab        (--only ab) section 3's batches of 500, drain and live, into daemons that run
             other commits' metering plugins (``git archive <commit> plugins/metering``
             unpacked somewhere, ``--baseline-metering LABEL=DIR``) and into one that runs
             this tree's, rounds interleaved, each daemon with its own nats-server

7. batch     (--only batch) process_batch alone, in this process, no NATS: CPU seconds per
             event of each --baseline-metering and of this tree, batch by batch in turn,
             and the ledgers they write compared row by row

    git archive 7a03ad0 plugins/metering | tar -x -C /tmp/m1126
    python bench/metering_bench.py --only ab --rounds 3 --baseline-metering 2026-11-26=/tmp/m1126/plugins/metering
    python bench/metering_bench.py --only batch --events 64000 --baseline-metering 2026-11-26=/tmp/m1126/plugins/metering

"Deduplicated" here: JetStream drops a message whose Nats-Msg-Id it saw
within its window (a batch resent as is); the ledger drops every event whose
(source, id) it counted before, whatever message carries it, for >= 32 days.
The daemon runs as its own process (``--serve``, a ``meshd run`` that can add
the test keyring), the publisher (the SDK) in this one, nats-server in a third.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

from benchlib import cpu_model

from meshd.testing import stop_process, wait_for

ROOT = Path(__file__).resolve().parent.parent
REGION = "eu-west-1"
OTHERS = ["health", "membership", "failover", "routing", "alerts", "keys"]
METERS = {"api_calls": {"kind": "SUM"}, "users": {"kind": "UNIQUE_COUNT"}}
TENANTS = [f"tenant-{i:02d}" for i in range(10)]
VALUES = [str(1 + i % 997) if i % 3 else f"{i % 50}.{i % 100:02d}" for i in range(1000)]


# ---------------------------------------------------------------- the daemon process


def use_metering_from(directory: str) -> None:
    """Make ``meshd_plugins.metering`` the package in ``directory`` (another commit's copy), before hooks load."""
    import importlib.util

    import meshd_plugins

    for name in [m for m in sys.modules if m == "meshd_plugins.metering" or m.startswith("meshd_plugins.metering.")]:
        del sys.modules[name]  # this module's own imports (the tenant hash) loaded this tree's
    spec = importlib.util.spec_from_file_location("meshd_plugins.metering", Path(directory) / "__init__.py",
                                                  submodule_search_locations=[directory])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["meshd_plugins.metering"] = module
    meshd_plugins.metering = module  # type: ignore[attr-defined]
    spec.loader.exec_module(module)


def serve(config: str, keyring: bool, metering_from: str | None = None) -> None:
    """``meshd run`` with only metering (and optionally the seeded test keyring)."""
    if metering_from:
        use_metering_from(metering_from)
    import anyio
    from metering_keyring import SeededKeyringPlugin

    from meshd.daemon import Daemon
    from meshd.daemon import serve as serve_daemon
    from meshd.logs import setup_logging
    from meshd.plugins import Hooks

    extra = [("benchkeyring", SeededKeyringPlugin())] if keyring else []
    hooks = Hooks.load(blocked=OTHERS, extra=extra)
    loaded = hooks.load_config(config)
    setup_logging("info", "json")
    anyio.run(serve_daemon, Daemon(loaded, hooks), backend="asyncio")


class DaemonProcess:
    def __init__(self, config: Path, port: int, keyring: bool, log: Path, metering_from: Path | None = None):
        self.config, self.port, self.keyring, self.log = config, port, keyring, log
        self.metering_from = metering_from
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [sys.executable, __file__, "--serve", str(self.config)] + (["--keyring"] if self.keyring else [])
        if self.metering_from is not None:
            args += ["--metering-from", str(self.metering_from)]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=out, start_new_session=True)
        wait_for(lambda: (self.metering() or {}).get("consumer", {}).get("running"), 30, "consumer running")

    def status(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/status", timeout=2) as resp:
                return json.loads(resp.read())
        except OSError:
            return None

    def metering(self) -> dict[str, Any] | None:
        doc = self.status()
        return doc.get("metering") if doc else None

    def counted(self) -> int:
        return int(((self.metering() or {}).get("ledger") or {}).get("accepted_total") or 0)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------- fixtures


def federation(workdir: Path, nats_url: str, name: str, **metering: Any) -> tuple[Path, int]:
    from meshd.natsserver import free_port
    from meshd.testing import write_federation

    base = workdir / name
    base.mkdir(parents=True)
    (base / "tenants.yaml").write_text("tenants:\n" + "".join(f"  {t}: {{residency: EU}}\n"
                                                              for t in dict.fromkeys(TENANTS + WORKER_TENANTS)))
    port = free_port()
    configs = write_federation(base, [REGION], nats_url, patch={
        "metering": {"meters": METERS, "stream": {"max_bytes": "1GiB"}, **metering},
        "http": {"port": port}, "plugins": {"disabled": OTHERS}})
    return configs[REGION], port


def balanced_tenants(partitions: int, per_partition: int) -> list[str]:
    """Tenant ids spread evenly over ``partitions`` by the metering hash, so each worker gets the same share."""
    from meshd_plugins.metering.subjects import partition_of

    chosen: dict[int, list[str]] = {k: [] for k in range(partitions)}
    i = 0
    while any(len(v) < per_partition for v in chosen.values()):
        tenant = f"tenant-{i:03d}"
        group = chosen[partition_of(tenant, partitions)]
        if len(group) < per_partition:
            group.append(tenant)
        i += 1
    return [t for k in range(per_partition) for t in (chosen[p][k] for p in range(partitions))]


WORKER_TENANTS = balanced_tenants(2, 5)


def events(n: int, prefix: str, tenants: list[str] = TENANTS) -> list[dict[str, Any]]:
    """Realistic events: distinct millisecond timestamps, varied values, ten tenants, UUID-like ids."""
    now = time.time()
    out = []
    for i in range(n):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 60 - i / 1000)) + f".{i % 1000:03d}Z"
        out.append({"id": f"{prefix}-{i:08d}-7f3a9c2e", "source": "//bench/api-gw/eu-west-1",
                    "tenant": tenants[i % len(tenants)], "meter": "api_calls",
                    "value": VALUES[i % len(VALUES)], "time": stamp, "specversion": "1.0"})
    return out


async def publish(nats_url: str, evs: list[dict[str, Any]], batch: int, receipts: bool = False,
                  sort: bool = False) -> float:
    """Publish through the SDK (JetStream acks, pipelined); the seconds it took."""
    from meshd_plugins.metering.sdk import UsageClient

    client = await UsageClient.connect([nats_url], federation="test", region=REGION, batch_size=batch,
                                       receipts=receipts, max_in_flight=256 if batch > 1 else 2000,
                                       sorted_by_tenant=sort)
    try:
        began = time.perf_counter()
        result = await client.publish(evs)
        took = time.perf_counter() - began
        assert result.stored == len(evs) and not result.failed, (result.stored, result.failed[:2])
        return took
    finally:
        await client.close()


# ---------------------------------------------------------------- 1. ledger only


def bench_ledger(workdir: Path, n: int) -> list[dict[str, Any]]:
    from metering_keyring import SeededKeyring

    from meshd_plugins.metering.atrest import KeyringProtected, Plaintext
    from meshd_plugins.metering.config import MeterKind
    from meshd_plugins.metering.events import Policy, check_message, encode
    from meshd_plugins.metering.ledger import Ledger

    n -= n % 500
    now = time.time()
    policy = Policy(meters={"api_calls": MeterKind.SUM}, tenant_check=lambda t: None, max_age=31 * 86400)
    rows = []
    for tenants in (1, 1000):
        evs = events(n, f"l{tenants}")
        for i, e in enumerate(evs):
            e["tenant"] = f"t{i % tenants}"
        msgs = [encode(evs[b:b + 500]) for b in range(0, n, 500)]
        for mode in ("plaintext", "keyring"):
            keyring = SeededKeyring(REGION) if mode == "keyring" else None
            ledger = Ledger(workdir / f"ledger-{tenants}-{mode}.sqlite3",
                            KeyringProtected(keyring) if keyring else Plaintext(), region=REGION,
                            retention=35 * 86400)
            ledger.open()
            began = time.perf_counter()
            for i in range(0, len(msgs), 128):
                checked = [check_message(m, now, policy) for m in msgs[i:i + 128]]
                ledger.apply([(evs, now) for evs, _ in checked])
            took = time.perf_counter() - began
            assert ledger.counters["accepted"] == n
            rows.append({"tenants": tenants, "at_rest": mode, "events": n, "seconds": round(took, 3),
                         "events_per_s": round(n / took), "encryptions": keyring.encryptions if keyring else 0})
            ledger.close()
    return rows


# ---------------------------------------------------------------- 2. anchors


async def bench_anchor(nats_url: str, n: int) -> dict[str, Any]:
    import nats

    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await js.add_stream(name="anchor", subjects=["anchor.>"])
    payload = b"x" * 128
    began = time.perf_counter()
    pending = []
    for _ in range(n):
        pending.append(await js.publish_async("anchor.x", payload))
        if len(pending) >= 500:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    took = time.perf_counter() - began
    await js.delete_stream("anchor")
    await nc.close()
    return {"messages": n, "seconds": round(took, 3), "msgs_per_s": round(n / took)}


# ---------------------------------------------------------------- 3. ingest


def bench_ingest(workdir: Path, nats_url: str, name: str, n: int, batch: int, keyring: bool,
                 rounds: int) -> dict[str, Any]:
    """``rounds`` x (backlog drain, then live) into one daemon; best and median of each figure."""
    config, port = federation(workdir, nats_url, name)
    daemon = DaemonProcess(config, port, keyring, workdir / f"{name}.log")
    daemon.start()
    figures: dict[str, list[float]] = {"publish": [], "drain": [], "live": [], "live_publish": []}
    try:
        for r in range(rounds):
            backlog, live_events = events(n, f"{name}-{r}-b"), events(n, f"{name}-{r}-l")  # before any clock
            counted = daemon.counted()
            # Backlog: publish with the daemon paused, then time the drain alone.
            daemon.signal(signal.SIGSTOP)
            try:
                figures["publish"].append(n / asyncio.run(publish(nats_url, backlog, batch)))
            finally:
                daemon.signal(signal.SIGCONT)
            began = time.perf_counter()
            wait_for(lambda: daemon.counted() >= counted + n, 600, "backlog drained")
            figures["drain"].append(n / (time.perf_counter() - began))
            # Live: publish while it consumes; done when the last event is counted.
            began = time.perf_counter()
            figures["live_publish"].append(n / asyncio.run(publish(nats_url, live_events, batch)))
            wait_for(lambda: daemon.counted() >= counted + 2 * n, 600, "live events counted")
            figures["live"].append(n / (time.perf_counter() - began))
        status = daemon.metering() or {}
        assert status["ledger"]["accepted_total"] == 2 * n * rounds
        assert status["at_rest"] == ("keyring" if keyring else "plaintext")
        row: dict[str, Any] = {"case": name, "batch": batch, "at_rest": status["at_rest"], "events": n,
                               "rounds": rounds, "ledger_bytes": status["ledger"]["bytes"]}
        for key, values in figures.items():
            row[f"{key}_events_per_s_best"] = round(max(values))
            row[f"{key}_events_per_s_median"] = round(statistics.median(values))
        return row
    finally:
        daemon.stop()


def bench_ingest_ab(workdir: Path, n: int, batch: int, rounds: int, baselines: dict[str, Path]) -> dict[str, Any]:
    """Batches of ``batch`` into daemons running each baseline's metering and this tree's, rounds interleaved.

    Each daemon has its own nats-server (two consumers of one region's stream would split it).
    """
    from meshd.natsserver import NatsServer

    variants: dict[str, Path | None] = {**baselines, "this tree": None}
    sides: dict[str, tuple[Any, DaemonProcess]] = {}
    figures: dict[str, dict[str, list[float]]] = {label: {"drain": [], "live": []} for label in variants}
    anchors: list[int] = []
    try:
        for i, (label, source) in enumerate(variants.items()):
            server = NatsServer(workdir / f"nats-ab{i}").start()
            config, port = federation(workdir, server.url, f"ab{i}")
            daemon = DaemonProcess(config, port, False, workdir / f"ab{i}.log", source)
            sides[label] = (server, daemon)
            daemon.start()
        order = list(variants)
        for r in range(rounds):
            anchors.append(asyncio.run(bench_anchor(sides["this tree"][0].url, 20_000))["msgs_per_s"])
            for label in order[r % len(order):] + order[:r % len(order)]:  # each goes first in turn
                server, daemon = sides[label]
                backlog, live_events = events(n, f"ab-{r}-b"), events(n, f"ab-{r}-l")
                counted = daemon.counted()
                daemon.signal(signal.SIGSTOP)
                try:
                    asyncio.run(publish(server.url, backlog, batch))
                finally:
                    daemon.signal(signal.SIGCONT)
                began = time.perf_counter()
                wait_for(lambda d=daemon, c=counted: d.counted() >= c + n, 600, "backlog drained")
                figures[label]["drain"].append(n / (time.perf_counter() - began))
                began = time.perf_counter()
                asyncio.run(publish(server.url, live_events, batch))
                wait_for(lambda d=daemon, c=counted: d.counted() >= c + 2 * n, 600, "live events counted")
                figures[label]["live"].append(n / (time.perf_counter() - began))
                print(f"  round {r} {label}: drain {figures[label]['drain'][-1]:,.0f} ev/s, "
                      f"live {figures[label]['live'][-1]:,.0f} ev/s", file=sys.stderr)
        anchor = statistics.median(anchors)
        out: dict[str, Any] = {"events": n, "batch": batch, "rounds": rounds,
                               "anchor_js_acked_publish_128B_per_round": anchors, "anchor_median": round(anchor)}
        ours = figures["this tree"]
        for label, figs in figures.items():
            assert sides[label][1].counted() == 2 * n * rounds
            row: dict[str, Any] = {"metering": str(variants[label] or "this tree")}
            for key, values in figs.items():
                row[f"{key}_events_per_s"] = [round(v) for v in values]
                row[f"{key}_median"] = round(statistics.median(values))
                row[f"{key}_best"] = round(max(values))
                if label != "this tree":
                    row[f"{key}_this_tree_vs_it_median"] = round(statistics.median(ours[key]) / statistics.median(values), 2)
                    row[f"{key}_this_tree_vs_it_per_round"] = [round(a / b, 2) for a, b in zip(ours[key], values)]
            row["drain_median_vs_anchor"] = round(row["drain_median"] / anchor, 2)
            out[label] = row
        return out
    finally:
        for server, daemon in sides.values():
            daemon.stop()
            server.stop()


def load_metering(directory: Path, name: str) -> Any:
    """Another commit's metering package under its own name, beside this tree's in the same process."""
    import importlib
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, directory / "__init__.py", submodule_search_locations=[str(directory)])
    assert spec is not None and spec.loader is not None
    sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sys.modules[name])
    return importlib.import_module(f"{name}.ingest")


def bench_batch_cpu(workdir: Path, n: int, rounds: int, baselines: dict[str, Path]) -> dict[str, Any]:
    """CPU seconds of ``process_batch`` per event (validate + one ledger transaction per 128 messages of 500),
    each baseline's and this tree's in one process, batch by batch in turn; the ledgers must come out equal."""
    import importlib

    from meshd_plugins.metering import ingest as ours

    variants = {label: load_metering(d, f"metering_baseline{i}") for i, (label, d) in enumerate(baselines.items())}
    variants["this tree"] = ours
    tenants = set(TENANTS)
    sides: dict[str, list[Any]] = {}
    for i, (label, ingest) in enumerate(variants.items()):
        package = ingest.__name__.rsplit(".", 1)[0]
        events_mod, config, ledger_mod, atrest = (importlib.import_module(f"{package}.{m}")
                                                  for m in ("events", "config", "ledger", "atrest"))
        policy = events_mod.Policy(meters={"api_calls": config.MeterKind.SUM},
                                   tenant_check=lambda t: None if t in tenants else ("unknown_tenant", t),
                                   max_age=31 * 86400)
        ledger = ledger_mod.Ledger(workdir / f"batch{i}.sqlite3", atrest.Plaintext(), region=REGION,
                                   retention=35 * 86400)
        ledger.open()
        sides[label] = [ingest, policy, ledger, 0.0]
    now = time.time()
    order = list(sides)
    for r in range(rounds):
        evs = events(n, f"cpu-{r}")
        msgs = [json.dumps(evs[i:i + 500]).encode() for i in range(0, n, 500)]
        for b, i in enumerate(range(0, len(msgs), 128)):
            for label in order[b % len(order):] + order[:b % len(order)]:  # each goes first in turn
                ingest, policy, ledger, _ = side = sides[label]
                batch = [ingest.Incoming(m, {}, i + j, now) for j, m in enumerate(msgs[i:i + 128])]
                began = time.process_time()
                ingest.process_batch(batch, policy, ledger)  # 2026-11-26 had no partitions argument
                side[3] += time.process_time() - began
    dumps = {label: side[2]._db().execute("SELECT * FROM aggregates ORDER BY 1, 2, 3").fetchall()
             for label, side in sides.items()}
    assert all(d == dumps["this tree"] for d in dumps.values()), "the ledgers differ"
    out: dict[str, Any] = {"events": n * rounds, "messages_per_batch": 128, "ledgers_equal": True}
    ours_cpu = sides["this tree"][3]
    for label, side in sides.items():
        assert side[2].counters["accepted"] == n * rounds
        out[label] = {"cpu_us_per_event": round(side[3] / (n * rounds) * 1e6, 2),
                      "this_tree_cpu_vs_it": round(ours_cpu / side[3], 3)}
        side[2].close()
    return out


# ---------------------------------------------------------------- 4. sigkill


def bench_sigkill(workdir: Path, nats_url: str, n: int) -> dict[str, Any]:
    # 32 messages (16,000 events) per transaction, so that the kill lands between commits.
    config, port = federation(workdir, nats_url, "sigkill", fetch_batch=32)
    daemon = DaemonProcess(config, port, False, workdir / "sigkill.log")
    daemon.start()
    try:
        sent = events(n, "k")
        period = sent[-1]["time"][:13]  # the hour of the oldest event; all were stamped within n ms
        if sent[0]["time"][:13] != period:
            period = sent[0]["time"][:7]  # straddles an hour: ask for the month
        daemon.signal(signal.SIGSTOP)
        try:
            asyncio.run(publish(nats_url, sent, 500))
        finally:
            daemon.signal(signal.SIGCONT)
        wait_for(lambda: daemon.counted() >= n // 3, 600, "a third counted")
        daemon.kill()
        killed_at = time.perf_counter()
        daemon.start()
        restarted = time.perf_counter()
        at_restart = daemon.counted()
        wait_for(lambda: daemon.counted() >= n, 600, "all counted after the restart")
        caught_up = time.perf_counter()
        status = daemon.metering() or {}
        ledger = status["ledger"]
        from meshd.client import DaemonClient
        from meshd.plugins import Hooks

        loaded = Hooks.load(blocked=OTHERS).load_config(config)
        client = DaemonClient(loaded, timeout=30)
        total = Decimal(0)
        for tenant in TENANTS:  # the period must hold the events' times: they are a minute old
            code, doc = client.request("GET", f"/v1/usage?tenant={tenant}&period={period}", admin=True)
            total += Decimal(doc["meters"]["api_calls"]["value"])
        expected = sum(Decimal(e["value"]) for e in sent)
        return {"events_sent": n, "counted_when_restarted": at_restart, "killed_mid_stream": 0 < at_restart < n,
                "ledger_accepted_total": ledger["accepted_total"],
                "duplicates_refused_after_restart": status["events"]["duplicates"],
                "sum": str(total), "sum_expected": str(expected),
                "exact": ledger["accepted_total"] == n and total == expected,
                "restart_to_ready_s": round(restarted - killed_at, 2),
                "catch_up_s": round(caught_up - restarted, 2)}
    finally:
        daemon.stop()


# ---------------------------------------------------------------- 5. workers


class IngestWorker:
    """A `meshd ingest --partitions k` process (metering alone, as in systemd's meshd-ingest@)."""

    def __init__(self, config: Path, partition: int, log: Path):
        self.config, self.partition, self.log = config, partition, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "meshd", "ingest", "--config", str(self.config),
                                          "--partitions", str(self.partition), "--log-format", "json"],
                                         stdout=out, stderr=out, start_new_session=True)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 15)


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    import psutil

    out = {}
    for name, pid in pids.items():
        times = psutil.Process(pid).cpu_times()
        out[name] = times.user + times.system
    return out


async def fetching(nats_url: str, consumers: list[str]) -> bool:
    """Every consumer has a fetch waiting on it: its process is bound and idle."""
    import nats

    from meshd_plugins.metering.subjects import stream_name

    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for name in consumers:
            try:
                if not (await js.consumer_info(stream_name("test", REGION), name)).num_waiting:
                    return False
            except Exception:
                return False
        return True
    finally:
        await nc.close()


def bench_workers(workdir: Path, n: int, counts: list[int], rounds: int) -> dict[str, Any]:
    """The same backlog drained by 1 and by 2 ingesting processes, rounds interleaved; medians and CPU.

    Each setup has its own nats-server (the same region's stream cannot have two layouts at once).
    """
    from meshd.natsserver import NatsServer
    from meshd_plugins.metering.subjects import partition_consumer

    setups: dict[int, tuple[Any, DaemonProcess, list[IngestWorker]]] = {}
    try:
        for w in counts:
            server = NatsServer(workdir / f"nats-workers{w}").start()
            config, port = federation(workdir, server.url, f"workers{w}", partitions=w,
                                      ingest=["0"] if w > 1 else "local")
            daemon = DaemonProcess(config, port, False, workdir / f"workers{w}.log")
            setups[w] = (server, daemon, [])
            daemon.start()
            for k in range(1, w):
                worker = IngestWorker(config, k, workdir / f"workers{w}-p{k}.log")
                setups[w][2].append(worker)
                worker.start()
            names = [partition_consumer(k, w) for k in range(w)]
            wait_for(lambda u=server.url, c=names: asyncio.run(fetching(u, c)), 60, "every partition consumed")
        drains: dict[int, list[float]] = {w: [] for w in counts}
        cpu: dict[int, list[dict[str, float]]] = {w: [] for w in counts}
        for r in range(rounds):
            for w in counts:
                server, daemon, extra = setups[w]
                procs = {"daemon": daemon.proc.pid, **{f"ingest-p{x.partition}": x.proc.pid for x in extra}}  # type: ignore[union-attr]
                procs["nats-server"] = server.proc.pid
                backlog = events(n, f"w{w}-{r}", WORKER_TENANTS)
                counted = daemon.counted()
                for p in (daemon, *extra):
                    p.signal(signal.SIGSTOP)
                try:
                    asyncio.run(publish(server.url, backlog, 500, sort=True))
                finally:
                    before = cpu_seconds(procs)
                    began = time.perf_counter()
                    for p in (daemon, *extra):
                        p.signal(signal.SIGCONT)
                wait_for(lambda d=daemon, c=counted: d.counted() >= c + n, 600, "backlog drained")
                took = time.perf_counter() - began
                after = cpu_seconds(procs)
                drains[w].append(n / took)
                cpu[w].append({k: round(after[k] - before[k], 2) for k in procs} | {"wall": round(took, 2)})
                print(f"  round {r} workers {w}: {n / took:,.0f} ev/s {cpu[w][-1]}", file=sys.stderr)
        out: dict[str, Any] = {"events": n, "rounds": rounds, "batch": 500, "tenants": WORKER_TENANTS}
        for w in counts:
            out[f"workers{w}"] = {"drain_events_per_s": [round(x) for x in drains[w]],
                                  "median": round(statistics.median(drains[w])), "best": round(max(drains[w])),
                                  "cpu_seconds_per_drain": cpu[w]}
        if 1 in counts and 2 in counts:
            out["ratio_2_vs_1_median"] = round(out["workers2"]["median"] / out["workers1"]["median"], 2)
            out["ratio_2_vs_1_per_round"] = [round(b / a, 2) for a, b in zip(drains[1], drains[2])]
        return out
    finally:
        for server, daemon, extra in setups.values():
            for worker in extra:
                worker.stop()
            daemon.stop()
            server.stop()


# ---------------------------------------------------------------- main


def machine() -> dict[str, Any]:
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "nproc": os.cpu_count(), "cpu": cpu_model(),
            "python": platform.python_version(), "loadavg_at_start": os.getloadavg()}


def report(results: dict[str, Any], path: str | None) -> None:
    """Print the results (and write them to ``path``), with the load average at the end of the run."""
    results["machine"]["loadavg_at_end"] = os.getloadavg()
    text = json.dumps(results, indent=2)
    print(text)
    if path:
        Path(path).write_text(text + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--keyring", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per ingest case (best and median)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--workers", default="1,2", help="ingesting process counts to compare (section 5)")
    parser.add_argument("--only", choices=["workers", "ab", "batch"],
                        help="run only this section (ab and batch compare with --baseline-metering)")
    parser.add_argument("--baseline-metering", action="append", metavar="[LABEL=]DIR",
                        help="with --only ab: another commit's plugins/metering (git archive) to run beside this "
                             "tree's; repeat for several")
    parser.add_argument("--events", type=int, help="events per drain and per live run (default 300,000; --quick 50,000)")
    parser.add_argument("--metering-from", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.keyring, args.metering_from)
        return

    from meshd.natsserver import NatsServer

    big = args.events or (50_000 if args.quick else 300_000)
    single = 5_000 if args.quick else 20_000
    results: dict[str, Any] = {"machine": machine(), "command": " ".join([Path(sys.executable).name, *sys.argv])}
    counts = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="meshd-metering-bench-") as tmp:
        workdir = Path(tmp)
        if args.only in ("ab", "batch"):
            if not args.baseline_metering:
                parser.error(f"--only {args.only} needs --baseline-metering DIR")
            print(f"{args.only}: {args.baseline_metering} and this tree ...", file=sys.stderr)
            specs = dict(spec.split("=", 1) if "=" in spec else (spec, spec) for spec in args.baseline_metering)
            baselines = {label: Path(d).resolve() for label, d in specs.items()}
            if args.only == "ab":
                results["ab"] = bench_ingest_ab(workdir, big, 500, args.rounds, baselines)
            else:
                results["batch_cpu"] = bench_batch_cpu(workdir, args.events or 64_000, args.rounds, baselines)
            report(results, args.json)
            return
        if args.only == "workers":
            print(f"workers {counts} ...", file=sys.stderr)
            results["workers"] = bench_workers(workdir, big, counts, args.rounds)
            report(results, args.json)
            return
        print("ledger only ...", file=sys.stderr)
        results["ledger"] = bench_ledger(workdir, big // 3)
        server = NatsServer(workdir / "nats").start()
        try:
            print("anchors ...", file=sys.stderr)
            results["anchor_js_acked_publish_128B"] = asyncio.run(bench_anchor(server.url, single * 2))
            results["ingest"] = []
            for name, n, batch, keyring in (("batch500-plaintext", big, 500, False),
                                            ("batch500-keyring", big, 500, True),
                                            ("batch100-plaintext", big // 3, 100, False),
                                            ("single-plaintext", single, 1, False)):
                print(f"ingest {name} ...", file=sys.stderr)
                results["ingest"].append(bench_ingest(workdir, server.url, name, n, batch, keyring, args.rounds))
            print("sigkill ...", file=sys.stderr)
            results["sigkill"] = bench_sigkill(workdir, server.url, big)
        finally:
            server.stop()
        print(f"workers {counts} ...", file=sys.stderr)
        results["workers"] = bench_workers(workdir, big, counts, args.rounds)
    anchor = results["anchor_js_acked_publish_128B"]["msgs_per_s"]
    for row in results["ingest"]:
        row["live_best_vs_js_acked_anchor"] = round(row["live_events_per_s_best"] / anchor, 2)
    report(results, args.json)


if __name__ == "__main__":
    main()
