"""The registry's copy survives the NATS server restarting under it."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshd import NewTenant
from meshd.config import NatsConfig, TenantRegistryConfig
from meshd.natsserver import NatsServer
from meshd.tenantkv import opened
from meshd.testing import until
from meshd.transport import NatsTransport

pytestmark = pytest.mark.anyio


async def test_a_change_after_a_server_restart_reaches_the_copy_promptly(tmp_path: Path, nats_binary: str) -> None:
    server = NatsServer(tmp_path / "nats", binary=nats_binary).start()
    settings = TenantRegistryConfig(registry="kv")
    reader = NatsTransport(NatsConfig(servers=[server.url]), name="reader")
    writer = NatsTransport(NatsConfig(servers=[server.url]), name="writer")
    try:
        await reader.connect()
        async with opened(reader, settings, jurisdiction="EU") as d:
            before = await d.create(NewTenant(name="before", residency="EU"))
            server.stop()
            server.start()
            await writer.connect()
            async with opened(writer, settings, jurisdiction="EU") as w:
                assert before.id in w.tenants  # the bucket is on disk: the restart lost nothing
                after = await w.create(NewTenant(name="after", residency="EU"))
                # nats-py alone notices a lost watch only after missed heartbeats (about 20 s here).
                await until(lambda: after.id in d.tenants, timeout=5, what="the change in the reader's copy")
                assert d.watch_restarts >= 1 and before.id in d.tenants
    finally:
        await writer.close()
        await reader.close()
        server.stop()


async def test_the_customer_bucket_is_placed_by_its_jurisdictions_tags(tmp_path: Path, nats_binary: str) -> None:
    import nats

    from meshd import CustomerData
    from meshd.natsserver import NatsCluster
    from meshd.tenantkv import KvTenantDirectory

    cluster = NatsCluster(tmp_path / "cluster", size=3)
    for node, tag in zip(cluster.nodes, ["eu", "eu", "us"], strict=True):
        node.binary = nats_binary
        node.authorization = f'server_tags: ["{tag}"]'  # appended to the config as it is
    cluster.start()
    transport = NatsTransport(NatsConfig(servers=cluster.urls), name="eu")
    try:
        await transport.connect()
        placed = TenantRegistryConfig(registry="kv", placement={"EU": ["eu"], "SG": ["sg"]})
        async with opened(transport, placed, jurisdiction="EU") as d:
            t = await d.create(NewTenant(name="placed", residency="EU"), customer=CustomerData(country="FR"))
            assert (await d.customer_data(t.id or "")) == CustomerData(country="FR")
        nc = await nats.connect(cluster.urls[0])
        info = await nc.jetstream().stream_info("KV_meshd_customers_EU")
        assert info.config.placement is not None and info.config.placement.tags == ["eu"]
        assert info.cluster is not None and info.cluster.leader in {cluster.nodes[0].name, cluster.nodes[1].name}
        assert info.config.max_msgs_per_subject == placed.history
        await nc.close()
        # No server carries "sg": that bucket cannot be made, rather than stored on another jurisdiction's servers.
        sg = KvTenantDirectory(placed, jurisdiction="SG")
        with pytest.raises(Exception, match="(?i)tag|placement|resources|peers"):
            await sg.open(transport)
    finally:
        await transport.close()
        cluster.stop()
