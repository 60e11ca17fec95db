"""Metering against a real nats-server: in-process daemons, the SDK, JetStream, the ledger."""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import nats
import pytest

from meshd.natsserver import NatsServer, authorization_block
from meshd.testing import until
from meshd_plugins.metering.atrest import Plaintext
from meshd_plugins.metering.config import MeteringConfig
from meshd_plugins.metering.events import Policy, Reason, encode
from meshd_plugins.metering.ingest import Incoming, Ingestor, process_batch
from meshd_plugins.metering.ledger import Ledger
from meshd_plugins.metering.sdk import UsageClient
from meshd_plugins.metering.subjects import CONSUMER, stream_name, usage_publisher_permissions, usage_subject

pytestmark = [pytest.mark.anyio, pytest.mark.nats]


def ev(i: int | str, value: Any = "0.5", **kw: Any) -> dict[str, Any]:
    return {"id": f"ev-{i}", "source": "//api-gw", "tenant": "acme-eu", "meter": "api_calls",
            "value": value, **kw}


def month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


async def sdk(url: str, region: str = "eu-west-1", **kw: Any) -> UsageClient:
    return await UsageClient.connect([url], federation="test", region=region, **kw)


async def test_duplicates_are_counted_once_resent_after_the_jetstream_window_and_after_a_restart(
        nats_server: NatsServer, metering_configs: Any, start_daemons: Any, runtime: Any) -> None:
    configs = metering_configs(nats_server.url, {"stream": {"duplicate_window": "2s"}})
    west = {"eu-west-1": configs["eu-west-1"]}
    events = [ev(i) for i in range(50)]
    client = await sdk(nats_server.url)
    try:
        async with start_daemons(west) as daemons:
            rt = runtime(daemons["eu-west-1"])
            first = await client.publish(events)
            # The very same message again at once: JetStream drops it within its window.
            again = await client.publish(events)
            assert (first.stored, first.duplicate_messages, again.duplicate_messages) == (50, 0, 1)
            await until(lambda: rt.accepted == 50)

            # The same events in another batch: JetStream stores it, the ledger does not count them twice.
            mixed = await client.publish(events[:20] + [ev("new")], wait=15)
            assert (mixed.accepted, mixed.duplicates) == (1, 20)

            # After the JetStream window the very same message is stored again; the ledger still knows it.
            with anyio.fail_after(20):
                while True:
                    late = await client.publish(events, wait=15)
                    if not late.duplicate_messages:
                        break
                    await anyio.sleep(0.2)
            assert (late.accepted, late.duplicates) == (0, 50)

        # A restarted daemon (same state directory) still refuses to count them again.
        async with start_daemons(west) as daemons:
            rt = runtime(daemons["eu-west-1"])
            after = await client.publish(events[:5] + [ev("newer")], wait=15)
            assert (after.accepted, after.duplicates) == (1, 5)
            result = await rt.query("acme-eu", month())
            assert result["meters"]["api_calls"]["value"] == "26.0"  # 52 events of 0.5
            assert result["meters"]["api_calls"]["events"] == 52
            assert rt.ledger.stats()["accepted_total"] == 52
    finally:
        await client.close()


async def test_bad_events_are_rejected_with_reasons_counted_and_never_stored(
        nats_server: NatsServer, metering_configs: Any, start_daemons: Any, runtime: Any) -> None:
    configs = metering_configs(nats_server.url)
    future = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    async with start_daemons({"eu-west-1": configs["eu-west-1"]}) as daemons:
        daemon = daemons["eu-west-1"]
        rt = runtime(daemon)
        client = await sdk(nats_server.url)
        try:
            result = await client.publish([
                ev("good", "2"),
                ev("m", meter="no_such_meter"),
                ev("neg", "-1"),
                ev("us", tenant="globex-us"),
                ev("fut", time=future),
                {"source": "//api-gw", "tenant": "acme-eu", "meter": "api_calls", "value": 1},
                ev("float", 0.25),
                ev("who", tenant="nobody"),
            ], wait=15)
            reasons = {r.index: r.reason for r in result.rejected}
            assert reasons == {1: Reason.UNKNOWN_METER, 2: Reason.NEGATIVE_VALUE, 3: Reason.NOT_RESIDENT,
                               4: Reason.FUTURE_TIME, 5: Reason.MISSING_ID, 6: Reason.BAD_VALUE,
                               7: Reason.UNKNOWN_TENANT}
            assert result.accepted == 1 and not result.ok

            # A plain NATS publisher sending garbage: rejected and acknowledged, the stream keeps flowing.
            nc = await nats.connect(nats_server.url)
            js = nc.jetstream()
            await js.publish(usage_subject("test", "eu-west-1"), b"{this is not json")
            await js.publish(usage_subject("test", "eu-west-1"), encode(ev("raw-future", time=future)))
            await js.publish(usage_subject("test", "eu-west-1"), encode(ev("after-garbage", "3")))
            await until(lambda: rt.accepted == 2)
            assert rt.rejected["malformed_json"] == 1
            with anyio.fail_after(10):  # consumed, acknowledged and deleted, the bad ones included
                while (await js.stream_info(stream_name("test", "eu-west-1"))).state.messages:
                    await anyio.sleep(0.05)
            await nc.close()
        finally:
            await client.close()

        # The SDK caught three locally (no id, a float, the future); the daemon counts the rest by reason.
        for reason in ("unknown_meter", "negative_value", "not_resident", "future_time", "unknown_tenant",
                       "malformed_json"):
            assert daemon.metrics.value("metering_events_rejected_total", reason=reason) == 1, reason
        for reason in ("missing_id", "bad_value"):
            assert daemon.metrics.value("metering_events_rejected_total", reason=reason) == 0, reason
        assert daemon.metrics.value("metering_events_accepted_total") == 2
        totals = await rt.query("acme-eu", month())
        assert totals["meters"]["api_calls"] == {"kind": "SUM", "value": "5", "events": 2, "exact": True}
        assert (await rt.local_totals("globex-us", 0, 2**40)) == {}
        assert (await rt.local_totals("nobody", 0, 2**40)) == {}


async def test_a_batch_committed_but_not_acknowledged_is_redelivered_and_not_counted_again(
        nats_server: NatsServer, tmp_path: Path) -> None:
    settings = MeteringConfig(meters={"api_calls": {"kind": "SUM"}}, ack_wait=1.0)
    policy = Policy(meters=settings.kinds(), future_skew=300, max_age=31 * 86400)
    ledger = Ledger(tmp_path / "ledger.sqlite3", Plaintext(), region="eu-west-1", retention=35 * 86400)
    ledger.open()
    nc = await nats.connect(nats_server.url)
    outcomes: list[Any] = []

    def ingestor() -> Ingestor:
        return Ingestor(nc=nc, federation="test", region="eu-west-1", settings=settings, ledger=ledger,
                        policy=lambda: policy, on_outcomes=lambda out, _s: outcomes.extend(out),
                        on_failure=lambda exc, n: None, log=logging.getLogger("test"))

    try:
        await ingestor().setup()
        client = UsageClient(nc, federation="test", region="eu-west-1", batch_size=10, receipts=False)
        await client.publish([ev(i) for i in range(30)])

        # A consumer that commits and then dies before acknowledging.
        sub = await nc.jetstream().pull_subscribe_bind(durable=CONSUMER, stream=stream_name("test", "eu-west-1"))
        msgs = await sub.fetch(3, timeout=5)
        batch = [Incoming(m.data, m.headers, m.metadata.sequence.stream, m.metadata.timestamp.timestamp(), m)
                 for m in msgs]
        first, forwards = await anyio.to_thread.run_sync(process_batch, batch, policy, ledger)
        assert sum(o.accepted for o in first) == 30 and not forwards
        await sub.unsubscribe()

        # Its successor gets the same messages again once ack_wait has passed.
        async with anyio.create_task_group() as tg:
            tg.start_soon(ingestor().run)
            await until(lambda: sum(o.duplicates for o in outcomes) == 30)
            tg.cancel_scope.cancel()
        assert sum(o.accepted for o in outcomes) == 0
        assert ledger.counters["accepted"] == 30
        assert ledger.totals("acme-eu", 0, 2**40)["api_calls"].aggregate.sum == Decimal(15)
    finally:
        await nc.close()
        ledger.close()


async def test_totals_are_united_across_regions_and_a_down_region_is_named(
        nats_server: NatsServer, metering_configs: Any, start_daemons: Any, runtime: Any) -> None:
    configs = metering_configs(nats_server.url, {"query_timeout": "1s"})
    eu = {r: configs[r] for r in ("eu-west-1", "eu-central-1")}
    async with start_daemons(eu) as daemons:
        for region in eu:
            client = await sdk(nats_server.url, region)
            got = await client.publish([ev(f"{region}-1", "1.25", source=f"//{region}"),
                                        ev(f"{region}-u", "alice", meter="users", source=f"//{region}"),
                                        ev(f"{region}-v", region, meter="users", source=f"//{region}")], wait=15)
            assert got.accepted == 3, got
            await client.close()
        result = await runtime(daemons["eu-west-1"]).query("acme-eu", month())
        assert result["complete"] and result["missing"] == []
        assert result["meters"]["api_calls"]["value"] == "2.50"
        assert result["meters"]["users"]["value"] == "3"  # alice in both regions counts once
        assert result["regions"] == {"eu-west-1": {"answered": True, "events": 3},
                                     "eu-central-1": {"answered": True, "events": 3}}

    async with start_daemons({"eu-west-1": configs["eu-west-1"]}) as daemons:
        result = await runtime(daemons["eu-west-1"]).query("acme-eu", month())
        assert result["complete"] is False
        assert result["missing"] == ["eu-central-1"]
        assert "no answer" in result["regions"]["eu-central-1"]["error"]
        assert result["meters"]["api_calls"]["value"] == "1.25"


async def test_the_ledger_is_encrypted_with_the_keyring_or_says_it_is_plaintext(
        nats_server: NatsServer, metering_configs: Any, start_daemons: Any, runtime: Any) -> None:
    configs = metering_configs(nats_server.url)
    async with start_daemons({"eu-west-1": configs["eu-west-1"]}, keyring=True) as daemons:
        daemon = daemons["eu-west-1"]
        rt = runtime(daemon)
        client = await sdk(nats_server.url)
        assert (await client.publish([ev("secret", "777.77")], wait=15)).accepted == 1
        await client.close()
        assert rt.status()["at_rest"] == "keyring"
        assert daemon.metrics.value("metering_ledger_encrypted") == 1
        assert (await rt.query("acme-eu", month()))["meters"]["api_calls"]["value"] == "777.77"
        path = Path(rt.ledger.stats()["path"])
    raw = b"".join(p.read_bytes() for p in path.parent.iterdir())
    assert b"acme-eu" not in raw and b"777.77" not in raw

    async with start_daemons({"eu-central-1": configs["eu-central-1"]}) as daemons:
        daemon = daemons["eu-central-1"]
        assert runtime(daemon).status()["at_rest"] == "plaintext"
        assert daemon.metrics.value("metering_ledger_encrypted") == 0


async def test_with_the_keys_plugin_the_ledger_is_encrypted_under_the_regions_keyring(
        nats_server: NatsServer, metering_configs: Any, start_daemons: Any, runtime: Any) -> None:
    configs = metering_configs(nats_server.url)
    async with start_daemons({"eu-west-1": configs["eu-west-1"]}, also=["keys"]) as daemons:
        rt = runtime(daemons["eu-west-1"])
        assert rt.status()["at_rest"] == "keyring"
        client = await sdk(nats_server.url)
        assert (await client.publish([ev("k1", "31.4159")], wait=15)).accepted == 1
        await client.close()
        assert (await rt.query("acme-eu", month()))["meters"]["api_calls"]["value"] == "31.4159"
        path = Path(rt.ledger.stats()["path"])
    raw = b"".join(p.read_bytes() for p in path.parent.iterdir())
    assert b"acme-eu" not in raw and b"31.4159" not in raw


async def test_a_regions_services_may_publish_usage_only_into_their_own_region(tmp_path: Path) -> None:
    permissions = {f"usage-{r}": ("pw-" + r, usage_publisher_permissions("test", r))
                   for r in ("eu-west-1", "eu-central-1")}
    auth = authorization_block("test", {"eu-west-1": "daemon-pw"}, extra_users=permissions)
    server = NatsServer(tmp_path / "nats", authorization=auth).start()
    try:
        admin = await nats.connect(server.url, user="eu-west-1", password="daemon-pw",
                                   inbox_prefix="_INBOX.eu-west-1")
        js = admin.jetstream()
        for region in ("eu-west-1", "eu-central-1"):
            await js.add_stream(name=stream_name("test", region), subjects=[usage_subject("test", region)])
        await admin.close()

        client = await UsageClient.connect([server.url], federation="test", region="eu-west-1",
                                           user="usage-eu-west-1", password="pw-eu-west-1", publish_timeout=1,
                                           retries=0)
        try:
            assert (await client.publish([ev(1)])).stored == 1
            elsewhere = UsageClient(client.nc, federation="test", region="eu-central-1", publish_timeout=1,
                                    retries=0, receipts=False)
            denied = await elsewhere.publish([ev(2)])
            assert denied.stored == 0 and len(denied.failed) == 1
        finally:
            await client.close()
    finally:
        server.stop()


async def test_a_failing_ledger_loses_nothing_and_alerts_until_it_commits_again(
        nats_server: NatsServer, metering_configs: Any, start_daemons: Any, runtime: Any,
        alert_recorder: Any) -> None:
    configs = metering_configs(nats_server.url, {"alert_interval": "100ms", "alert_resolve_after": "300ms"})
    async with start_daemons({"eu-west-1": configs["eu-west-1"]}, plugins=[("recorder", alert_recorder)]) as ds:
        daemon = ds["eu-west-1"]
        rt = runtime(daemon)
        recorder = daemon.hooks.pm.get_plugin("recorder")
        real_apply, failures = rt.ledger.apply, []

        def broken_apply(messages: Any, *keys: Any) -> Any:
            if len(failures) < 3:
                failures.append(1)
                raise sqlite3.OperationalError("disk I/O error")
            return real_apply(messages, *keys)

        rt.ledger.apply = broken_apply
        client = await sdk(nats_server.url)
        try:
            result = await client.publish([ev(i, "2") for i in range(40)] + [ev("bad", meter="nope")])
            assert result.stored == 41
            await until(lambda: rt.accepted == 40, timeout=30)
        finally:
            await client.close()
        assert daemon.metrics.value("metering_ledger_errors_total") == 3
        assert recorder.seen("MeteringLedgerFailing") and recorder.seen("MeteringLedgerFailing", "resolved")
        assert rt.status()["state"] == "running" and rt.health().ok
        assert rt.ledger.stats()["accepted_total"] == 40 and rt.duplicates == 0

        await until(lambda: recorder.seen("MeteringRejectedEvents"))
        firing = recorder.seen("MeteringRejectedEvents")[0]
        assert firing.labels == {"alertname": "MeteringRejectedEvents", "severity": "warning",
                                 "region": "eu-west-1"}
        assert "unknown_meter: 1" in firing.annotations["description"]
        await until(lambda: recorder.seen("MeteringRejectedEvents", "resolved"))
