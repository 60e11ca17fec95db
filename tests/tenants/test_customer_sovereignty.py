"""An EU tenant's customer data never reaches a US region: not its directory, its NATS traffic, nor its disk.

The directory keeps customer data in the jurisdiction's own bucket and a
region opens only its own; NATS permissions (docs/tenants.md) keep a
region's user off the other jurisdictions' buckets and inboxes. This test
runs both: daemons as NATS users with those permissions, the US daemon's
connection tapped, and a raw client subscribed to ``>`` as the US user.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import nats
import pytest
import yaml

from meshd import CustomerData, CustomerDataRefused, NewTenant
from meshd.natsserver import NatsServer, authorization_block
from meshd.testing import TcpProxy, running_daemons, until, write_federation

pytestmark = pytest.mark.anyio

REGIONS = ["eu-west-1", "us-east-1"]
OTHERS = ["health", "membership", "failover", "alerts", "keys", "billing", "fencing", "metering", "routing"]
SECRETS = ["DE998877665", "Geheimweg 7, 10115 Berlin", "privat.person@example.de"]


def authorization(jurisdictions: dict[str, str] | None) -> str:
    """The NATS users ``meshd init`` writes: each region kept off the other jurisdictions' customer buckets."""
    return authorization_block("test", {"eu-west-1": "eu-pw", "us-east-1": "us-pw"}, jurisdictions=jurisdictions)


class Tap(TcpProxy):
    """A proxy that keeps every byte it carries, both ways."""

    def __init__(self, upstream: tuple[str, int]):
        super().__init__(upstream)
        self.carried = bytearray()
        self._lock = threading.Lock()

    def _pump(self, src: Any, dst: Any, send: Callable[[bytes | None], None]) -> None:
        def keep(data: bytes | None) -> None:
            if data is not None:
                with self._lock:
                    self.carried += data
            send(data)
        super()._pump(src, dst, keep)


def leaked(blob: bytes) -> list[str]:
    return [s for s in SECRETS if s.encode() in blob]


JURISDICTIONS = {"eu-west-1": "EU", "us-east-1": "US"}


async def test_eu_customer_data_never_reaches_a_us_region(tmp_path: Path, nats_binary: str) -> None:
    server = NatsServer(tmp_path / "nats", binary=nats_binary, authorization=authorization(JURISDICTIONS)).start()
    tap = Tap(("127.0.0.1", server.port))
    try:
        configs = write_federation(tmp_path, REGIONS, server.url, patch={
            "tenants": {"registry": "kv"}, "plugins": {"disabled": OTHERS}})
        for region, url, password in (("eu-west-1", server.url, "eu-pw"), ("us-east-1", tap.url, "us-pw")):
            data = yaml.safe_load(configs[region].read_text())
            data["nats"] = {"servers": [url], "user": region, "password": password}
            configs[region].write_text(yaml.safe_dump(data))
        # What the US region's NATS user may see: everything it is allowed to subscribe to.
        raw = await nats.connect(server.url, user="us-east-1", password="us-pw", inbox_prefix="_INBOX.us-east-1")
        seen: list[bytes] = []

        async def capture(msg: Any) -> None:
            seen.append(msg.subject.encode() + b" " + msg.data + b" " + json.dumps(dict(msg.headers or {})).encode())

        for subject in ("meshd.test.>", "_INBOX.us-east-1.>", "$KV.>"):
            await raw.subscribe(subject, cb=capture)
        await raw.flush()
        try:
            async with running_daemons(configs, blocked=OTHERS) as ds:
                eu, us = ds["eu-west-1"], ds["us-east-1"]
                customer = CustomerData(country="DE", vat_id=SECRETS[0], billing_address=SECRETS[1], email=SECRETS[2])
                made = await eu.tenants.create(NewTenant(name="Privat GmbH", residency="EU"), customer=customer)
                tid = made.id
                assert tid and eu.tenants.tenants[tid].vat_id == SECRETS[0]
                await eu.tenants.set_customer_data(tid, customer.model_copy(update={"country": "AT"}))
                last = await eu.tenants.update(tid, {"plan": "pro"})

                # The US region has the tenant (its non-personal record) and nothing else.
                await until(lambda: tid in us.tenants.tenants and us.tenants.tenants[tid].revision == last.revision,
                            timeout=5, what="the US copy at the last revision")
                us_copy = us.tenants.tenants[tid]
                assert (us_copy.country, us_copy.vat_id, us_copy.subdivision) == (None, None, None)
                with pytest.raises(CustomerDataRefused):
                    await us.tenants.customer_data(tid)
                with pytest.raises(CustomerDataRefused):
                    await us.tenants.set_customer_data(tid, customer)

                # The US user cannot read the EU bucket even when it tries.
                with pytest.raises(Exception):  # noqa: B017  (a permissions violation or a timeout)
                    await raw.jetstream(timeout=1).key_value("meshd_customers_EU")
                with pytest.raises(Exception):  # noqa: B017
                    await raw.jetstream(timeout=1).get_last_msg("KV_meshd_customers_EU",
                                                                f"$KV.meshd_customers_EU.{tid}")
                js = raw.jetstream()

                # Every message of the global bucket, read as the US user, holds no customer data.
                info = await js.stream_info("KV_meshd_tenants")
                stored = [await js.get_msg("KV_meshd_tenants", seq) for seq in range(1, info.state.last_seq + 1)]
                assert any(tid in (m.subject or "") for m in stored)
                assert not leaked(b"".join(m.data or b"" for m in stored))

                # Everything the EU daemon published before this marker has reached the raw subscriber.
                marker = anyio.Event()

                async def on_marker(_msg: Any) -> None:
                    marker.set()

                await raw.subscribe("meshd.test.marker.eu-west-1", cb=on_marker)
                await raw.flush()
                await eu.transport.publish("meshd.test.marker.eu-west-1", b"")
                with anyio.fail_after(10):
                    await marker.wait()

                assert any(b"meshd_tenants" in m for m in seen)  # the capture does see registry traffic
                assert not leaked(b"\n".join(seen))
                assert tap.carried and not leaked(bytes(tap.carried))
                us_state = us.state_dir
            files = [p for p in Path(us_state).rglob("*") if p.is_file()]
            assert files and not any(leaked(p.read_bytes()) for p in files)
        finally:
            await raw.close()
    finally:
        tap.close()
        server.stop()
