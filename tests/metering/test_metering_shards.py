"""Partitioned metering in real processes: `meshd ingest` workers, SIGKILL of one mid-drain, repartition."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from meshd.testing import LocalFederation, NotifySocket, stop_process
from meshd_plugins.metering.sdk import UsageClient
from meshd_plugins.metering.subjects import partition_of

from .test_metering_federation import stream_messages

pytestmark = [pytest.mark.nats, pytest.mark.slow]

REGIONS = ["eu-west-1", "eu-central-1", "us-east-1"]
REGION = "eu-west-1"
TENANTS = ["acme-eu", "bistro-fr"]  # in partitions 0 and 1 of 2


def month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


def metering(fed: LocalFederation) -> dict[str, Any]:
    return (fed.status(REGION) or {}).get("metering") or {}


def shard_counts(fed: LocalFederation) -> dict[int, int]:
    shards = (metering(fed).get("ledger") or {}).get("shards") or []
    return {s["partition"]: s["accepted_total"] for s in shards}


def accepted(fed: LocalFederation) -> int:
    return int((metering(fed).get("ledger") or {}).get("accepted_total") or 0)


def usage(fed: LocalFederation, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshd", "--lang", "en", *args,
                           "--config", str(fed.config_path(REGION))],
                          capture_output=True, text=True, timeout=60)


def totals(fed: LocalFederation, tenant: str) -> dict[str, Any]:
    out = usage(fed, "usage", "--tenant", tenant, "--period", month(), "--json")
    doc = json.loads(out.stdout)
    return doc["meters"]["api_calls"]


class Worker:
    """One `meshd ingest` process, its readiness read from a real notify socket."""

    def __init__(self, fed: LocalFederation, partitions: str, tmp: Path):
        self.fed, self.partitions = fed, partitions
        self.notify = NotifySocket(tmp / f"notify-{partitions}.sock")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.notify.messages.clear()
        env = {**os.environ, **self.fed.env, "NOTIFY_SOCKET": str(self.notify.path), "PYTHONUNBUFFERED": "1"}
        with open(self.fed.logs / f"ingest-{self.partitions}.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "meshd", "ingest", "--config", str(self.fed.config_path(REGION)),
                 "--partitions", self.partitions, "--log-format", "json"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self.notify.wait_for("READY=1")

    def pause(self, paused: bool) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP if paused else signal.SIGCONT)

    def stop(self) -> int | None:
        return None if self.proc is None else stop_process(self.proc, 15)

    def close(self) -> None:
        self.stop()
        self.notify.close()


async def publish(fed: LocalFederation, events: list[dict[str, Any]], *, sort: bool, batch: int = 50) -> None:
    password = (fed.dir / "secrets" / f"{REGION}.nats-password").read_text().strip()
    client = await UsageClient.connect([fed.servers[0].url], federation=fed.federation, region=REGION,
                                       user=REGION, password=password, inbox_prefix=f"_INBOX.{REGION}",
                                       batch_size=batch, receipts=False, sorted_by_tenant=sort)
    try:
        result = await client.publish(events)
        assert result.ok and result.stored == len(events), result.failed[:3]
    finally:
        await client.close()


def events(prefix: str, n: int, value: str = "0.01") -> list[dict[str, Any]]:
    return [{"id": f"{prefix}-{i}", "source": "//api-gw", "tenant": TENANTS[i % 2], "meter": "api_calls",
             "value": value} for i in range(n)]


def test_sigkill_of_one_of_two_ingest_workers_mid_drain_loses_nothing_and_counts_nothing_twice(
        local_federation: Any, tenants_file: Path, federation_config: Any, tmp_path: Path) -> None:
    assert [partition_of(t, 2) for t in TENANTS] == [0, 1]
    total = 24_000
    fed = local_federation(regions=REGIONS, daemons=False, shared_files=[tenants_file],
                           config=federation_config(fetch_batch=4, partitions=2, ingest="none"))
    fed.start_daemon(REGION)
    fed.wait_for(lambda: metering(fed).get("state") == "running", what="the daemon's metering")
    assert metering(fed)["consumer"]["ingested_here"] == []
    first, second = Worker(fed, "0", tmp_path), Worker(fed, "1", tmp_path)
    try:
        first.start()
        second.start()
        # Everything goes into the stream first, sorted by tenant and not (through the router, which
        # runs with partition 0): the workers then have a backlog to chew.
        first.pause(True)
        second.pause(True)
        try:
            anyio.run(lambda: publish(fed, events("s", total - 2000), sort=True))
            anyio.run(lambda: publish(fed, events("u", 2000), sort=False))
        finally:
            first.pause(False)
            second.pause(False)
        fed.wait_for(lambda: shard_counts(fed).get(1, 0) > 0, interval=0.01, what="partition 1's first commits")
        assert second.proc is not None
        second.proc.kill()  # SIGKILL: no shutdown at all
        second.proc.wait()
        assert shard_counts(fed)[1] < total // 2, "partition 1 drained before the kill: nothing was tested"
        second.start()
        fed.wait_for(lambda: accepted(fed) == total, timeout=120, what=f"all {total} events counted")
        fed.wait_for(lambda: anyio.run(stream_messages, fed, REGION) == 0, what="the stream to drain")
        ledger = metering(fed)["ledger"]
        assert shard_counts(fed) == {0: total // 2, 1: total // 2}
        assert ledger["accepted_total"] == total

        # `meshd usage` reads both shards: each tenant's total is exact.
        for tenant in TENANTS:
            api = totals(fed, tenant)
            assert api["events"] == total // 2 and api["value"] == "120.00", (tenant, api)

        # A clean shutdown: SIGTERM, exit 0.
        assert first.stop() == 0
    finally:
        first.close()
        second.close()


def test_repartition_one_to_two_and_back_loses_and_double_counts_nothing(
        local_federation: Any, tenants_file: Path, federation_config: Any) -> None:
    fed = local_federation(regions=REGIONS, daemons=False, shared_files=[tenants_file],
                           config=federation_config())
    fed.start_daemon(REGION)
    fed.wait_for(lambda: metering(fed).get("consumer", {}).get("running"), what="consumer running")
    anyio.run(lambda: publish(fed, events("a", 400), sort=False))
    fed.wait_for(lambda: accepted(fed) == 400, what="the first 400 events")

    busy = usage(fed, "metering", "repartition", "--to", "1")
    assert busy.returncode == 1 and "stop the daemon" in busy.stderr, busy.stderr
    assert fed.stop_daemon(REGION) == 0
    # While nothing ingests: new events, and old ones again in other messages (past JetStream's dedup).
    anyio.run(lambda: publish(fed, events("b", 200), sort=True, batch=30))
    anyio.run(lambda: publish(fed, events("a", 100), sort=False, batch=30))  # through the router

    wrong = usage(fed, "metering", "repartition", "--to", "2")
    assert wrong.returncode == 2 and "metering.partitions is 1, not 2" in wrong.stderr, wrong.stderr
    fed.patch_config(REGION, {"metering": {"partitions": 2}})
    # Started before the shards are rewritten, the daemon counts nothing and says what to do.
    fed.start_daemon(REGION)
    fed.wait_for(lambda: metering(fed).get("state") == "locked", what="the layout refused")
    assert "meshd metering repartition" in metering(fed)["detail"]
    assert fed.stop_daemon(REGION) == 0

    done = usage(fed, "metering", "repartition", "--to", "2", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["from"] == 1 and report["events"] == 400
    assert sorted(report["events_per_partition"]) == [200, 200]
    fed.start_daemon(REGION)
    fed.wait_for(lambda: accepted(fed) == 600 and anyio.run(stream_messages, fed, REGION) == 0,
                 what="the events stored while stopped counted, the resent ones not")
    assert shard_counts(fed) == {0: 300, 1: 300}
    assert metering(fed)["events"]["duplicates"] == 100
    assert fed.metric(REGION, "meshd_metering_events_forwarded_total") == 100
    # `meshd usage record` publishes on the tenant's bucket and waits for that shard's commit.
    recorded = usage(fed, "usage", "record", "--tenant", "bistro-fr", "--meter", "api_calls", "--value", "0.01",
                     "--id", "r-1", "--source", "//api-gw")
    assert recorded.returncode == 0 and "recorded and counted" in recorded.stdout, recorded.stdout + recorded.stderr
    assert shard_counts(fed) == {0: 300, 1: 301}

    # And back to one partition: the same totals, nothing counted again.
    assert fed.stop_daemon(REGION) == 0
    anyio.run(lambda: publish(fed, events("a", 50) + events("c", 20), sort=False, batch=7))
    fed.patch_config(REGION, {"metering": {"partitions": 1}})
    assert usage(fed, "metering", "repartition", "--to", "1").returncode == 0
    fed.start_daemon(REGION)
    fed.wait_for(lambda: accepted(fed) == 621 and anyio.run(stream_messages, fed, REGION) == 0, what="back on one shard")
    for tenant, count in zip(TENANTS, (310, 311)):
        status, doc = fed.http(REGION, f"/v1/usage?tenant={tenant}&period={month()}", admin=True, timeout=10)
        assert status == 200, doc
        api = doc["meters"]["api_calls"]
        assert api["events"] == count and api["value"] == str(count * Decimal("0.01")), (tenant, api)
