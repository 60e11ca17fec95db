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
