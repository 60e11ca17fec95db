"""Real ``meshd run`` processes: SIGKILL mid-ingest, the CLI, and a query with a region down."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import nats
import pytest

from meshd.testing import LocalFederation
from meshd_plugins.metering.sdk import UsageClient
from meshd_plugins.metering.subjects import stream_name

pytestmark = [pytest.mark.nats, pytest.mark.slow]

REGIONS = ["eu-west-1", "eu-central-1", "us-east-1"]  # us-east-1 only for the US tenant's residency


def month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


def metering(fed: LocalFederation, region: str) -> dict[str, Any]:
    return (fed.status(region) or {}).get("metering") or {}


def cli(fed: LocalFederation, region: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshd", "--lang", "en", "usage", *args,
                           "--config", str(fed.config_path(region))],
                          capture_output=True, text=True, timeout=60)


async def publish_as_region(fed: LocalFederation, region: str, events: list[dict[str, Any]],
                            batch_size: int) -> int:
    password = (fed.dir / "secrets" / f"{region}.nats-password").read_text().strip()
    client = await UsageClient.connect([fed.servers[0].url], federation=fed.federation, region=region,
                                       user=region, password=password, inbox_prefix=f"_INBOX.{region}",
                                       batch_size=batch_size, receipts=False)
    try:
        result = await client.publish(events)
        assert result.ok and result.stored == len(events), result.failed[:3]
        return result.stored
    finally:
        await client.close()


async def stream_messages(fed: LocalFederation, region: str) -> int:
    password = (fed.dir / "secrets" / f"{region}.nats-password").read_text().strip()
    nc = await nats.connect(fed.servers[0].url, user=region, password=password, inbox_prefix=f"_INBOX.{region}")
    try:
        return (await nc.jetstream().stream_info(stream_name(fed.federation, region))).state.messages
    finally:
        await nc.close()


def test_sigkill_mid_ingest_loses_nothing_and_counts_nothing_twice(
        local_federation: Any, tenants_file: Path, federation_config: Any) -> None:
    total = 40_000
    # Small transactions, so that the kill lands between commits with many still to come.
    fed = local_federation(regions=REGIONS, daemons=False, shared_files=[tenants_file],
                           config=federation_config(fetch_batch=4))
    fed.start_daemon("eu-west-1")
    fed.wait_for(lambda: metering(fed, "eu-west-1").get("consumer", {}).get("running"), what="consumer running")
    events = [{"id": f"k-{i}", "source": "//api-gw", "tenant": "acme-eu", "meter": "api_calls", "value": "0.01"}
              for i in range(total)]

    fed.pause("eu-west-1")  # everything goes into the stream first: the daemon then has a backlog to chew
    try:
        anyio.run(publish_as_region, fed, "eu-west-1", events, 250)
    finally:
        fed.resume("eu-west-1")
    fed.wait_for(lambda: metering(fed, "eu-west-1").get("events", {}).get("accepted", 0) > 0, interval=0.01,
                 what="the first commits")
    fed.kill("eu-west-1")
    left = anyio.run(stream_messages, fed, "eu-west-1")
    assert left > 0, "the daemon finished before the kill: nothing was tested mid-ingest"

    fed.start_daemon("eu-west-1")
    fed.wait_for(lambda: (metering(fed, "eu-west-1").get("ledger") or {}).get("accepted_total") == total,
                 timeout=90, what=f"the ledger to count all {total} events")
    fed.wait_for(lambda: anyio.run(stream_messages, fed, "eu-west-1") == 0, what="the stream to drain")
    ledger = metering(fed, "eu-west-1")["ledger"]
    assert ledger["accepted_total"] == total and ledger["dedup_records"] == total

    out = cli(fed, "eu-west-1", "--tenant", "acme-eu", "--period", month(), "--json")
    # eu-central-1 is not running: the total is complete for eu-west-1 but the query says what is missing.
    assert out.returncode == 1, out.stderr
    doc = json.loads(out.stdout)
    assert doc["meters"]["api_calls"]["value"] == "400.00"
    assert doc["meters"]["api_calls"]["events"] == total
    assert doc["missing"] == ["eu-central-1"]


def test_usage_cli_records_queries_and_names_a_region_that_is_down(
        local_federation: Any, tenants_file: Path, federation_config: Any) -> None:
    fed = local_federation(regions=REGIONS, daemons=False, shared_files=[tenants_file],
                           config=federation_config(query_timeout="1s"))
    for region in ("eu-west-1", "eu-central-1"):
        fed.start_daemon(region, wait=False)
    for region in ("eu-west-1", "eu-central-1"):
        fed.wait_ready(region)
        fed.wait_for(lambda r=region: metering(fed, r).get("consumer", {}).get("running"), what="consumer")

    ok = cli(fed, "eu-west-1", "record", "--tenant", "acme-eu", "--meter", "api_calls", "--value", "12.5",
             "--id", "inv-1")
    assert ok.returncode == 0, ok.stderr
    assert "inv-1 recorded and counted" in ok.stdout
    again = cli(fed, "eu-west-1", "record", "--tenant", "acme-eu", "--meter", "api_calls", "--value", "12.5",
                "--id", "inv-1", "--source", "meshd-cli://elsewhere")
    assert again.returncode == 0  # another source: another event
    same = cli(fed, "eu-west-1", "record", "--tenant", "acme-eu", "--meter", "api_calls", "--value", "12.5",
               "--id", "inv-1", "--source", "meshd-cli://elsewhere")
    assert same.returncode == 0 and "counted once" in same.stdout
    central = cli(fed, "eu-central-1", "record", "--tenant", "acme-eu", "--meter", "api_calls", "--value", "0.25")
    assert central.returncode == 0, central.stderr

    bad = cli(fed, "eu-west-1", "record", "--tenant", "acme-eu", "--meter", "bandwidth", "--value", "1")
    assert bad.returncode == 2
    assert "no such meter is configured" in bad.stderr
    foreign = cli(fed, "eu-west-1", "record", "--tenant", "globex-us", "--meter", "api_calls", "--value", "1")
    assert foreign.returncode == 2 and "may not be stored in this region" in foreign.stderr

    full = cli(fed, "eu-west-1", "--tenant", "acme-eu", "--period", month())
    assert full.returncode == 0, full.stderr
    assert "from 2 of 2 region(s)" in full.stdout
    row = next(line for line in full.stdout.splitlines() if line.startswith("api_calls"))
    assert row.split()[1:] == ["SUM", "25.25", "3"]

    fed.kill("eu-central-1")
    partial = cli(fed, "eu-west-1", "--tenant", "acme-eu", "--period", month(), "--json")
    assert partial.returncode == 1
    doc = json.loads(partial.stdout)
    assert doc["complete"] is False and doc["missing"] == ["eu-central-1"]
    assert doc["meters"]["api_calls"]["value"] == "25.0"
    text = cli(fed, "eu-west-1", "--tenant", "acme-eu", "--period", month())
    assert text.returncode == 1
    assert "INCOMPLETE" in text.stderr and "eu-central-1" in text.stderr

    assert cli(fed, "eu-west-1", "--tenant", "acme-eu", "--period", "2026-13").returncode == 2
    assert cli(fed, "eu-west-1", "--tenant", "nobody", "--period", month()).returncode == 2
