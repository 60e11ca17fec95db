"""continuity.replicas: stream replicas, bus nodes and the regions they sit in, on real nats-server nodes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import StreamConfig

from meshd.natsserver import NatsCluster, NatsServer
from meshd.testing import until
from meshd_plugins.audit.checks.continuity import node_region
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


@contextlib.contextmanager
def cluster_of(tmp_path: Path, binary: str, names: Sequence[str]) -> Iterator[NatsCluster]:
    """A 3-node cluster whose nodes are named, and tagged, after the region each stands in."""
    regions = [n.split("/")[0] for n in names]
    cluster = NatsCluster(tmp_path / "cluster", size=len(names), names=[n.replace("/", "-") for n in names],
                          server_tags=[[f"region:{r}"] for r in regions])
    for node in cluster.nodes:
        node.binary = binary
    with cluster:
        yield cluster


async def audited_r3_stream(tmp_path: Path, urls: list[str]) -> Any:
    nc = await nats.connect(urls)
    try:
        await nc.jsm().add_stream(StreamConfig(name="meshd_usage_test_eu-west-1", subjects=["usage.eu-west-1"],
                                               num_replicas=3))
        async with daemons(tmp_path, urls[0], blocked=BLOCK, patch={"nats": {"servers": urls}}) as running:
            return await run_check("continuity.replicas", running["eu-west-1"])
    finally:
        await nc.close()


async def test_three_replicas_in_three_regions_pass(tmp_path: Path, nats_binary: str) -> None:
    with cluster_of(tmp_path, nats_binary, ["eu-west-1", "eu-central-1", "us-east-1"]) as cluster:
        result = await audited_r3_stream(tmp_path, cluster.urls)
    assert result.status == "pass", result.detail
    assert len(result.evidence["nats_nodes"]) == 3, result.evidence
    stream = result.evidence["streams"][0]
    assert stream["replicas"] == 3
    assert stream["regions"] == ["eu-central-1", "eu-west-1", "us-east-1"]
    assert stream["peer_regions"] == {p: p for p in stream["peers"]}


async def test_three_replicas_in_one_region_fail(tmp_path: Path, nats_binary: str) -> None:
    with cluster_of(tmp_path, nats_binary, ["eu-west-1/a", "eu-west-1/b", "eu-west-1/c"]) as cluster:
        result = await audited_r3_stream(tmp_path, cluster.urls)
    assert result.status == "fail"
    assert "every replica in one region, lost with it: meshd_usage_test_eu-west-1 (eu-west-1)" in result.detail
    assert result.evidence["streams"][0]["regions"] == ["eu-west-1"]
    assert result.evidence["node_regions"] == {"eu-west-1-a": "eu-west-1", "eu-west-1-b": "eu-west-1",
                                               "eu-west-1-c": "eu-west-1"}


async def test_replicas_on_nodes_of_no_known_region_fail(tmp_path: Path, nats_cluster: NatsCluster) -> None:
    result = await audited_r3_stream(tmp_path, nats_cluster.urls)
    assert result.status == "fail"
    assert "the region of NATS node(s) n1, n2, n3 is unknown" in result.detail


async def test_declared_node_regions_place_unnamed_nodes(tmp_path: Path, nats_cluster: NatsCluster) -> None:
    urls = nats_cluster.urls
    declared = {"n1": "eu-west-1", "n2": "eu-central-1", "n3": "us-east-1"}
    nc = await nats.connect(urls)
    try:
        await nc.jsm().add_stream(StreamConfig(name="meshd_usage_test_eu-west-1", subjects=["usage.eu-west-1"],
                                               num_replicas=3))
        async with daemons(tmp_path, urls[0], blocked=BLOCK, patch={
                "nats": {"servers": urls}, "audit": {"nats_node_regions": declared}}) as running:
            result = await run_check("continuity.replicas", running["eu-west-1"])
    finally:
        await nc.close()
    assert result.status == "pass", result.detail
    assert result.evidence["node_regions"] == declared


def test_a_node_name_names_its_region_only_on_a_boundary() -> None:
    regions = ["eu-west-1", "eu-west-10", "us-east-1"]
    assert node_region("nats-eu-west-10.b", regions, {}) == "eu-west-10"
    assert node_region("eu-west-1", regions, {}) == "eu-west-1"
    assert node_region("xeu-west-1", regions, {}) is None
    assert node_region("n1", regions, {"n1": "us-east-1"}) == "us-east-1"


async def test_three_nodes_count_before_any_stream_exists(tmp_path: Path, nats_cluster: NatsCluster) -> None:
    urls = nats_cluster.urls
    async with daemons(tmp_path, urls[0], blocked=BLOCK, patch={"nats": {"servers": urls}}) as running:
        nc = nats_client(running["eu-west-1"])
        # The node a client connects to advertises the others' URLs as cluster routes come up (INFO updates).
        await until(lambda: len(nc._server_info.get("connect_urls") or []) >= 3, what="the cluster advertised")
        result = await run_check("continuity.replicas", running["eu-west-1"])
    assert result.status == "pass", result.detail
    assert result.evidence["node_count"] == 3 and result.evidence["streams"] == []


def test_a_node_declared_in_an_unknown_region_is_bad_input(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from meshd.cli import main
    from meshd.testing import write_federation

    config = write_federation(tmp_path, ["eu-west-1"], "nats://127.0.0.1:1",
                              patch={"audit": {"nats_node_regions": {"n1": "eu-west-9"}}})["eu-west-1"]
    line = next(i for i, text in enumerate(config.read_text().splitlines(), 1) if "n1:" in text)
    assert main(["check-config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{config}:{line}" in err and "audit.nats_node_regions.n1" in err
    assert "'eu-west-9' is not a region of the federation (known: eu-west-1)" in err
