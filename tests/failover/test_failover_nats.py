"""Failover on real nats-server: the KV create fences concurrent committers, the CLI asks by quorum.

Daemons run in-process with synthetic membership events; the bus and the
decision bucket are real (a single server, and a 3-node JetStream cluster
with an R3 bucket).
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from meshd.cli import main
from meshd.natsserver import NatsCluster, NatsServer

from .conftest import ROOT

pytestmark = [pytest.mark.anyio, pytest.mark.nats]


async def test_concurrent_creates_of_one_slot_on_a_cluster_let_exactly_one_win(nats_cluster: NatsCluster) -> None:
    import nats

    from meshd.config import NatsConfig
    from meshd.transport import KeyExists, NatsTransport

    transports = [NatsTransport(NatsConfig(servers=[url]), name=f"t{i}") for i, url in enumerate(nats_cluster.urls * 3)]
    for t in transports:
        await t.connect()
    try:
        kv = [await t.key_value("fence", replicas=3) for t in transports]
        # A new R3 stream needs a moment before every node serves it: wait until each connection can write.
        for i, store in enumerate(kv):
            with anyio.fail_after(30):
                while True:
                    try:
                        await store.put(f"warmup.{i}", b"x")
                        break
                    except Exception:
                        await anyio.sleep(0.1)
        results: list[str] = []

        async def race(i: int) -> None:
            try:
                await kv[i].create("d.eu-west-1.1", f"from {i}".encode())
                results.append(f"won {i}")
            except KeyExists:
                results.append("lost")

        async with anyio.create_task_group() as tg:
            for i in range(len(kv)):
                tg.start_soon(race, i)
        winners = [r for r in results if r.startswith("won")]
        assert len(winners) == 1 and results.count("lost") == len(kv) - 1
        entry = await kv[0].get("d.eu-west-1.1")
        assert entry is not None and entry.value.decode() == winners[0].replace("won", "from")
        nc = await nats.connect(nats_cluster.urls[0])
        info = await nc.jetstream().stream_info("KV_fence")
        assert info.config.num_replicas == 3
        await nc.close()
    finally:
        for t in transports:
            await t.close()


async def test_seven_daemons_on_a_cluster_commit_one_decision_in_an_r3_bucket(make_federation: Any,
                                                                             nats_cluster: NatsCluster) -> None:
    import nats

    async with make_federation(nats_url=nats_cluster.urls[0], patch={"failover": {"vote_timeout": "5s"}}) as fed:
        for i, region in enumerate(fed.regions):  # spread the daemons over the three nodes
            fed.patch(region, {"nats": {"servers": [nats_cluster.urls[i % 3]]}})
        await fed.start_all()
        assert fed.engine("us-east-1").kv_replicas == 3
        await fed.see("eu-central-1", "dead")
        for region in fed.regions:
            await fed.until(lambda r=region: fed.decided(r, "eu-central-1"), what=f"{region} applied")
        assert await fed.kv_slots("us-east-1") == {"eu-central-1": [1]}
        # Every daemon holds the very same decision (applied_at is each daemon's own clock).
        decisions = {json.dumps({k: v for k, v in fed.decisions(r)[0].items() if k != "applied_at"}, sort_keys=True)
                     for r in fed.regions}
        assert len(decisions) == 1
        nc = await nats.connect(nats_cluster.urls[1])
        info = await nc.jetstream().stream_info("KV_meshd_failover")
        await nc.close()
        assert info.config.num_replicas == 3
        # At most one create succeeded (a winner whose reply timed out under load counts an error).
        assert sum(fed.daemons[r].metrics.value("failover_commit_attempts_total", result="created")
                   for r in fed.regions) <= 1


async def test_the_cli_asks_the_federation_and_waits_for_its_decision(make_federation: Any,
                                                                     nats_server: NatsServer,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    async with make_federation(nats_url=nats_server.url, http_ports=True,
                               patch={"failover": {"failback": "manual", "hold_down": "0.5s"},
                                      "tenants": str(ROOT / "etc" / "tenants.yaml")}) as fed:
        await fed.start_all()
        config = str(fed.configs["us-east-1"])

        async def cli(*argv: str) -> int:
            return await anyio.to_thread.run_sync(main, ["--lang", "en", *argv])

        # One region's operator asks; every peer sees eu-west-1 alive, so a second region must ask too.
        assert await cli("failover", "eu-west-1", "--config", config, "--reason", "CHG-7 maintenance",
                         "--no-wait") == 0
        out = capsys.readouterr().out
        assert "1 of 2 requesting regions so far (us-east-1)" in out
        assert "asked the federation for a failover of eu-west-1 (term 1, quorum 4)" in out
        assert await cli("failover", "eu-west-1", "--config", str(fed.configs["ca-central-1"]),
                         "--reason", "CHG-7 approved", "--timeout", "20") == 0
        out = capsys.readouterr().out
        assert "committed: eu-west-1 failed over to eu-central-1 in term 1" in out
        assert "requesting regions so far" not in out
        [logged] = await fed.until(lambda: [e["data"] for e in audit_entries(fed, "me-south-1", "decision")
                                            if e["data"]["region"] == "eu-west-1"])
        assert logged["requesters"] == ["ca-central-1", "us-east-1"]
        assert logged["reasons"] == {"us-east-1": "CHG-7 maintenance", "ca-central-1": "CHG-7 approved"}
        assert await cli("failover", "eu-west-1", "--config", config, "--reason", "again") == 2
        assert "already failed over" in capsys.readouterr().err
        assert await cli("failover", "atlantis-1", "--config", config, "--reason", "x") == 2
        assert "atlantis-1 is not a region" in capsys.readouterr().err
        assert await cli("failover", "us-west-2", "--config", config, "--reason", " ") == 2
        assert "a reason is required" in capsys.readouterr().err
        with pytest.raises(SystemExit) as exited:  # --reason is required: argparse stops before any request
            main(["--lang", "en", "failover", "us-west-2", "--config", config])
        assert exited.value.code == 2 and "--reason" in capsys.readouterr().err
        # failback: manual, so only an operator brings it back, once voters saw it alive for the hold-down.
        assert await cli("failback", "eu-west-1", "--config", config, "--reason", "CHG-7 done", "--json") == 0
        decision = json.loads(capsys.readouterr().out)
        assert decision["action"] == "failback" and decision["term"] == 2 and len(decision["voters"]) >= 4
        assert decision["requesters"] == ["us-east-1"]
        assert await cli("failback", "eu-west-1", "--config", config, "--reason", "again") == 2
        assert "not failed over" in capsys.readouterr().err
        # status --json carries the decisions with the documented keys.
        assert await cli("status", "--config", config, "--json") == 0
        status = json.loads(capsys.readouterr().out)
        assert [d["action"] for d in status["decisions"]] == ["failover", "failback"]
        assert {"region", "term", "action", "target", "voters", "committed_at", "requesters"} <= \
            set(status["decisions"][0])
        await fed.stop("us-east-1")
        assert await cli("failover", "eu-west-1", "--config", config, "--reason", "x") == 1
        assert "cannot reach" in capsys.readouterr().err


async def test_a_failover_that_would_strand_a_residency_is_refused_unless_forced(
        make_federation: Any, nats_server: NatsServer, capsys: pytest.CaptureFixture[str]) -> None:
    async with make_federation(nats_url=nats_server.url, http_ports=True,
                               patch={"tenants": str(ROOT / "etc" / "tenants.yaml")}) as fed:
        await fed.start_all()
        tenants = fed.daemons["us-east-1"].config.tenants.tenants
        stranded = sum(1 for t in tenants.values() if t.residency == "BH")

        async def cli(region: str, *argv: str) -> int:
            return await anyio.to_thread.run_sync(main, ["--lang", "en", "failover", "me-south-1", "--config",
                                                         str(fed.configs[region]), *argv])

        assert await cli("us-east-1", "--reason", "drill") == 2
        err = capsys.readouterr().err
        assert f"would leave residency BH without any region and strand {stranded} tenant(s)" in err
        assert "--force" in err
        assert fed.decisions("us-east-1") == []
        assert [e for e in audit_entries(fed, "us-east-1", "request")] == []  # refused before any request
        # Forced by two regions, it is decided: me-south-1 is failed over with nowhere to go.
        assert await cli("us-east-1", "--reason", "site evacuation", "--force", "--no-wait") == 0
        capsys.readouterr()
        assert await cli("eu-west-1", "--reason", "site evacuation confirmed", "--force", "--timeout", "20") == 0
        assert "committed: me-south-1 is failed over in term 1 but has no eligible target region" in \
            capsys.readouterr().out


def audit_entries(fed: Any, region: str, kind: str) -> list[dict[str, Any]]:
    path = fed.daemons[region].state_dir / "failover" / "audit.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [e for e in map(json.loads, lines) if e["kind"] == kind]


async def test_a_request_that_cannot_reach_quorum_times_out_with_exit_1(make_federation: Any,
                                                                       nats_server: NatsServer,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    async with make_federation(nats_url=nats_server.url, http_ports=True,
                               patch={"failover": {"manual": {"min_requesters": 1}}}) as fed:
        await fed.start_all()
        for region in ("us-west-2", "eu-west-1", "eu-central-1", "ca-central-1"):
            fed.plugin(region, "vetoer").reason = "maintenance freeze"
        code = await anyio.to_thread.run_sync(
            main, ["--lang", "en", "failover", "us-west-2", "--config", str(fed.configs["us-east-1"]),
                   "--reason", "drill", "--timeout", "3"])
        assert code == 1
        assert "no failover of us-west-2 was decided within 3 s" in capsys.readouterr().err
        assert fed.decisions("us-east-1") == []
