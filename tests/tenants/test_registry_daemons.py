"""Running daemons with ``tenants: {registry: kv}``: a tenant created at run time is routed and metered, no restart."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from meshd import NewTenant
from meshd.config import NatsConfig, TenantRegistryConfig
from meshd.natsserver import NatsServer
from meshd.tenantkv import KvTenantDirectory, opened
from meshd.testing import running_daemons, until, write_federation
from meshd.transport import NatsTransport
from meshd_plugins.metering.sdk import UsageClient

pytestmark = pytest.mark.anyio

REGIONS = ["eu-west-1", "us-east-1"]
OTHERS = ["health", "membership", "failover", "alerts", "keys", "billing", "fencing"]


def configs(tmp_path: Path, url: str) -> dict[str, Path]:
    return write_federation(tmp_path, REGIONS, url, patch={
        "tenants": {"registry": "kv"},
        "metering": {"meters": {"api_calls": {"kind": "SUM", "unit": "requests"}}},
        "plugins": {"disabled": OTHERS},
    })


@contextlib.asynccontextmanager
async def registry(url: str, jurisdiction: str = "EU") -> AsyncIterator[KvTenantDirectory]:
    """The registry seen from another connection (an operator's tool, the partner API of another region)."""
    transport = NatsTransport(NatsConfig(servers=[url]), name="operator")
    await transport.connect()
    try:
        async with opened(transport, TenantRegistryConfig(registry="kv"), jurisdiction=jurisdiction) as d:
            yield d
    finally:
        await transport.close()


async def test_a_tenant_created_at_run_time_is_routed_and_metered_without_restart(
        tmp_path: Path, nats_server: NatsServer) -> None:
    async with running_daemons(configs(tmp_path, nats_server.url), blocked=OTHERS) as ds, \
            registry(nats_server.url) as operator:
        eu, us = ds["eu-west-1"], ds["us-east-1"]
        assert isinstance(eu.tenants, KvTenantDirectory) and eu.tenants is eu.config.tenants
        routing = eu.hooks.pm.get_plugin("routing")
        refused = routing.answer(eu, {"tenant": "t_notyetcreated00", "from": "DE"}, "test")
        assert not refused["ok"]

        made = await operator.create(NewTenant(name="Late Shop", residency="EU", home="eu-west-1", plan="pro"))
        tid = made.id
        assert tid
        await until(lambda: tid in eu.tenants.tenants and tid in us.tenants.tenants, timeout=5,
                    what="both daemons' copies have the new tenant")

        reply = routing.answer(eu, {"tenant": tid, "from": "DE"}, "test")
        assert reply["ok"] and reply["region"] == "eu-west-1", reply
        us_reply = us.hooks.pm.get_plugin("routing").answer(us, {"tenant": tid, "from": "US"}, "test")
        assert us_reply["ok"] and us_reply["region"] == "eu-west-1", us_reply  # residency EU, asked in the US

        metering = eu.hooks.pm.get_plugin("metering").runtime
        await until(lambda: metering.ingestor is not None and metering.ingestor.running, timeout=20)
        client = await UsageClient.connect([nats_server.url], federation="test", region="eu-west-1")
        try:
            sent = await client.publish([{"id": "ev-1", "source": "//shop", "tenant": tid, "meter": "api_calls",
                                          "value": "2"}])
            assert sent.stored == 1
            await until(lambda: metering.accepted == 1, timeout=10, what="the event accepted")
        finally:
            await client.close()

        # A change is seen too: a new home region.
        await operator.update(tid, {"home": None})
        await until(lambda: eu.tenants.tenants[tid].home is None, timeout=5)
        assert routing.engine.tenants[tid].home is None


async def test_the_daemon_starts_its_plugins_with_the_registry_read_whole(
        tmp_path: Path, nats_server: NatsServer) -> None:
    async with registry(nats_server.url) as operator:
        made = [await operator.create(NewTenant(name=f"s{i}", residency="EU")) for i in range(20)]

    seen_at_startup: list[int] = []

    class Probe:
        from meshd import hookimpl

        @hookimpl
        async def meshd_startup(self, daemon: Any) -> None:
            seen_at_startup.append(len(daemon.tenants.tenants))

    async with running_daemons({"eu-west-1": configs(tmp_path, nats_server.url)["eu-west-1"]}, blocked=OTHERS,
                               extra_plugins=[("probe", Probe)]) as ds:
        assert seen_at_startup == [20]
        assert set(ds["eu-west-1"].tenants.tenants) == {t.id for t in made}
        assert ds["eu-west-1"].metrics.value("tenant_registry_tenants") == 20
