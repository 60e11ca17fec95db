"""residency.* and continuity.dr_pairs / failover_drill, logging.audit_chains: the failover and routing plugins' facts."""

from __future__ import annotations

from pathlib import Path

import nats
import pytest
from nats.js.api import StreamConfig, StreamSource

from meshd.natsserver import NatsServer
from meshd.tenants import Tenant

from .conftest import daemons, run_check

pytestmark = pytest.mark.anyio
WITH_FAILOVER = ("health", "routing", "alerts", "metering", "billing", "fencing", "partners")
WITH_ROUTING = ("health", "membership", "failover", "alerts", "metering", "billing", "fencing", "partners")
TENANTS = ("tenants:\n  acme-eu: {residency: EU, home: eu-west-1}\n  globex-us: {residency: US}\n"
           "  bistro-fr: {residency: EU}\n")
EU_PAIR = "regions:\n  eu-west-1: {pair: eu-central-1}\n  eu-central-1: {pair: eu-west-1}\n"


def dr_file(tmp_path: Path) -> Path:
    return tmp_path / "federation" / "dr_config.yaml"


async def test_dr_targets_and_pairs_inside_the_jurisdiction(tmp_path: Path, nats_server: NatsServer) -> None:
    (tmp_path / "federation").mkdir()
    dr_file(tmp_path).write_text(EU_PAIR)
    async with daemons(tmp_path, nats_server.url, blocked=WITH_FAILOVER) as running:
        daemon = running["eu-west-1"]
        targets = await run_check("residency.dr_targets", daemon)
        pairs = await run_check("continuity.dr_pairs", daemon)
        assert targets.status == "pass", targets.detail
        assert pairs.status == "pass", pairs.detail
        assert pairs.evidence["pairs"] == {"eu-central-1": "eu-west-1", "eu-west-1": "eu-central-1"}
        assert pairs.evidence["alone_in_jurisdiction"] == ["us-east-1"]

        # Someone edits the file on disk to send eu-west-1's traffic to the US.
        dr_file(tmp_path).write_text("regions:\n  eu-west-1: {targets: [us-east-1]}\n")
        targets = await run_check("residency.dr_targets", daemon)
    assert targets.status == "fail"
    assert "dr_config.yaml: us-east-1 is in jurisdiction US, eu-west-1 in EU" in targets.detail


async def test_no_dr_pair_fails_naming_the_regions(tmp_path: Path, nats_server: NatsServer) -> None:
    async with daemons(tmp_path, nats_server.url, blocked=WITH_FAILOVER) as running:
        result = await run_check("continuity.dr_pairs", running["eu-west-1"])
    assert result.status == "fail"
    assert "no DR pair inside the jurisdiction for eu-central-1 (EU), eu-west-1 (EU)" in result.detail


async def test_failover_drill_and_audit_chain(tmp_path: Path, nats_server: NatsServer) -> None:
    async with daemons(tmp_path, nats_server.url, blocked=WITH_FAILOVER) as running:
        daemon = running["eu-west-1"]
        drill = await run_check("continuity.failover_drill", daemon)
        assert drill.status == "fail" and "no failover drill in" in drill.detail

        engine = daemon.hooks.pm.get_plugin("failover").engine
        assert await engine.audit_append("request", {"region": "eu-central-1", "action": "failover",
                                                     "by": "ops", "reason": "drill"})
        drill = await run_check("continuity.failover_drill", daemon)
        assert drill.status == "pass", drill.detail
        assert drill.evidence["drills_recorded"] == 1

        chains = await run_check("logging.audit_chains", daemon)
        assert chains.status == "pass", chains.detail
        assert chains.evidence["chains"]["failover"]["last_hash"]

        log = Path(daemon.state_dir) / "failover" / "audit.log"
        log.write_text(log.read_text().replace('"reason":"drill"', '"reason":"dril!"'))
        chains = await run_check("logging.audit_chains", daemon)
    assert chains.status == "fail"
    assert f"failover audit log {log} does not verify" in chains.detail
    assert chains.evidence["chains"]["failover"]["problem"]["code"] == "edited"


async def test_routes_stay_in_residency_unless_the_engine_disagrees(tmp_path: Path,
                                                                    nats_server: NatsServer) -> None:
    (tmp_path / "tenants.yaml").write_text(TENANTS)
    async with daemons(tmp_path, nats_server.url, blocked=WITH_ROUTING,
                       patch={"tenants": str(tmp_path / "tenants.yaml")}) as running:
        daemon = running["eu-west-1"]
        result = await run_check("residency.routes", daemon)
        assert result.status == "pass", result.detail
        assert result.evidence["tenants_sampled"] == 3 and result.evidence["routed"] == 9

        # The engine's copy of a tenant gone stale: it routes an EU tenant in the US.
        engine = daemon.hooks.pm.get_plugin("routing").engine
        engine.set_tenant("acme-eu", Tenant(residency="US"))
        result = await run_check("residency.routes", daemon)
    assert result.status == "fail"
    assert "tenant acme-eu (EU)" in result.detail and "to us-east-1 (US)" in result.detail


async def test_a_mirror_across_jurisdictions_fails(tmp_path: Path, nats_server: NatsServer) -> None:
    (tmp_path / "empty").mkdir()
    async with daemons(tmp_path / "empty", nats_server.url, blocked=WITH_ROUTING) as running:
        result = await run_check("residency.placement", running["eu-west-1"])
    assert result.status == "not_applicable" and "no usage stream or customer bucket" in result.detail

    nc = await nats.connect(nats_server.url)
    js = nc.jsm()
    await js.add_stream(StreamConfig(name="meshd_usage_test_eu-west-1", subjects=["usage.test.eu-west-1"]))
    try:
        async with daemons(tmp_path, nats_server.url, blocked=WITH_ROUTING) as running:
            daemon = running["eu-west-1"]
            result = await run_check("residency.placement", daemon)
            assert result.status == "pass", result.detail
            assert [s["stream"] for s in result.evidence["streams"]] == ["meshd_usage_test_eu-west-1"]

            await js.add_stream(StreamConfig(name="meshd_usage_test_us-east-1",
                                             mirror=StreamSource(name="meshd_usage_test_eu-west-1")))
            result = await run_check("residency.placement", daemon)
    finally:
        await nc.close()
    assert result.status == "fail"
    assert ("stream meshd_usage_test_us-east-1 (US) copies meshd_usage_test_eu-west-1 (EU) across jurisdictions"
            in result.detail)


@pytest.mark.parametrize("created_before", [False, True])
async def test_customer_bucket_placed_by_its_jurisdiction_tags(tmp_path: Path, nats_binary: str,
                                                               created_before: bool) -> None:
    server = NatsServer(tmp_path / "tagged", binary=nats_binary, authorization='server_tags: ["eu"]').start()
    try:
        if created_before:
            # A bucket some earlier setup made without placement: the registry opens it as it is.
            nc = await nats.connect(server.url)
            await nc.jetstream().create_key_value(bucket="meshd_customers_EU")
            await nc.close()
        patch = {"tenants": {"registry": "kv", "placement": {"EU": ["eu"]}}}
        async with daemons(tmp_path, server.url, blocked=WITH_ROUTING, patch=patch) as running:
            result = await run_check("residency.placement", running["eu-west-1"])
    finally:
        server.stop()
    if created_before:
        assert result.status == "fail"
        assert "stream KV_meshd_customers_EU (EU) is placed with tags none, not ['eu']" in result.detail
    else:
        assert result.status == "pass", result.detail
        assert result.evidence["streams"][0]["placement_tags"] == ["eu"]
