"""continuity.replicas: stream replicas and bus nodes, on one nats-server and on a 3-node cluster."""

from __future__ import annotations

from pathlib import Path

import nats
import pytest
from nats.js.api import StreamConfig

from meshd.natsserver import NatsCluster, NatsServer
from meshd.testing import until
from meshd_plugins.audit.checks.facts import nats_client

from .conftest import daemons, run_check

pytestmark = pytest.mark.anyio
BLOCK = ("health", "membership", "failover", "routing", "alerts", "metering", "billing", "fencing", "partners")


async def test_one_node_and_one_replica_fail(tmp_path: Path, nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        await nc.jsm().add_stream(StreamConfig(name="meshd_usage_test_eu-west-1", subjects=["usage.eu-west-1"]))
        async with daemons(tmp_path, nats_server.url, blocked=BLOCK) as running:
            result = await run_check("continuity.replicas", running["eu-west-1"])
    finally:
        await nc.close()
    assert result.status == "fail"
    assert "1 NATS node(s) (n1)" in result.detail
    assert "streams with fewer than 3 replicas: meshd_usage_test_eu-west-1 (1)" in result.detail


async def test_three_nodes_and_three_replicas_pass(tmp_path: Path, nats_cluster: NatsCluster) -> None:
    urls = nats_cluster.urls
    nc = await nats.connect(urls)
    try:
        await nc.jsm().add_stream(StreamConfig(name="meshd_usage_test_eu-west-1", subjects=["usage.eu-west-1"],
                                               num_replicas=3))
        async with daemons(tmp_path, urls[0], blocked=BLOCK, patch={"nats": {"servers": urls}}) as running:
            result = await run_check("continuity.replicas", running["eu-west-1"])
    finally:
        await nc.close()
    assert result.status == "pass", result.detail
    assert len(result.evidence["nats_nodes"]) == 3, result.evidence
    assert result.evidence["streams"][0]["replicas"] == 3


async def test_three_nodes_count_before_any_stream_exists(tmp_path: Path, nats_cluster: NatsCluster) -> None:
    urls = nats_cluster.urls
    async with daemons(tmp_path, urls[0], blocked=BLOCK, patch={"nats": {"servers": urls}}) as running:
        nc = nats_client(running["eu-west-1"])
        # The node a client connects to advertises the others' URLs as cluster routes come up (INFO updates).
        await until(lambda: len(nc._server_info.get("connect_urls") or []) >= 3, what="the cluster advertised")
        result = await run_check("continuity.replicas", running["eu-west-1"])
    assert result.status == "pass", result.detail
    assert result.evidence["node_count"] == 3 and result.evidence["streams"] == []
