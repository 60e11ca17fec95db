"""A 3-region pipeline: every stage in order, a manual gate, a smoke test per region; ``meshd smoke``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from meshd.cli import main
from meshd.natsserver import free_port
from meshd.testing import running_daemons, until, write_federation
from meshd_plugins.deploy import Rollout, verify_chain
from meshd_plugins.deploy.runtime import Runtime

from .rolloutlab import Lab, deploy_patch, write_pipeline

pytestmark = [pytest.mark.anyio, pytest.mark.nats]

REGIONS = ["ca-central-1", "us-east-1", "eu-west-1"]
UNUSED = ("partners", "billing", "metering", "audit", "routing", "failover", "fencing")


def http_probe(name: str, port: int) -> dict[str, Any]:
    return {"name": name, "kind": "http", "url": f"http://127.0.0.1:{port}/", "interval": "1s", "timeout": "2s",
            "severity": "critical"}


def federation(tmp_path: Path, nats_url: str, labs: dict[str, Lab]) -> dict[str, Path]:
    pipeline = write_pipeline(tmp_path / "region_pipeline.yaml", [[r] for r in REGIONS],
                              {r: labs[r].driver() for r in REGIONS}, steps=[25, 100], bake="300ms",
                              smoke=True)
    doc = pipeline.read_text().replace("- regions:\n      - eu-west-1\n", "- regions:\n      - eu-west-1\n"
                                                                          "      gate: manual\n")
    pipeline.write_text(doc)
    configs = write_federation(tmp_path, REGIONS, nats_url, patch=deploy_patch(pipeline))
    import yaml

    for region, path in configs.items():
        data = yaml.safe_load(path.read_text())
        data["health"] = {"probes": [http_probe("service", labs[region].proxy.port)]}
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return configs


async def test_a_good_version_goes_through_every_stage(tmp_path: Path, nats_server: Any,
                                                      labs: dict[str, Lab]) -> None:
    for region in REGIONS:
        labs[region].start_traffic(threads=2)
    configs = federation(tmp_path, nats_server.url, labs)
    async with running_daemons(configs, blocked=UNUSED) as daemons:
        rt: Runtime = daemons["us-east-1"].hooks.pm.get_plugin("deploy").runtime
        await until(lambda: rt.store is not None, what="the rollout bucket")
        started = await rt.start_rollout("api", "v2", None, True)
        assert started.stages == [[r] for r in REGIONS] and started.gates == ["auto", "auto", "manual"]

        async def now() -> Rollout:
            assert rt.store is not None
            got = await rt.store.get("api")
            assert got is not None
            return got[0]

        gated = await until(lambda: _state(now(), "awaiting_gate"), timeout=60, what="the manual gate")
        assert gated.stage == 2 and labs["eu-west-1"].proxy.weights()["canary"] == 0
        assert [labs[r].proxy.weights()["canary"] for r in REGIONS[:2]] == [100, 100]
        await rt.operator("api", "promote")
        done = await until(lambda: _state(now(), "promoted"), timeout=60, what="the last stage")
    assert verify_chain(done.log) is None
    by_region = {r: [e["data"]["weight"] for e in done.log if e["kind"] == "step" and e["data"]["region"] == r]
                 for r in REGIONS}
    assert by_region == {r: [25, 100] for r in REGIONS}
    order = [e["data"].get("region") for e in done.log if e["kind"] == "region_promoted"]
    assert order == REGIONS
    assert [e["data"]["stage"] for e in done.log if e["kind"] == "stage"] == [1, 2]
    assert all(labs[r].proxy.weights()["canary"] == 100 for r in REGIONS)


async def _state(pending: Any, state: str) -> Rollout | None:
    rollout: Rollout = await pending
    return rollout if rollout.state == state else None


async def test_a_failing_smoke_test_fails_the_rollout_and_meshd_smoke_says_which(
        tmp_path: Path, nats_server: Any, labs: dict[str, Lab], capsys: pytest.CaptureFixture[str]) -> None:
    lab = labs["ca-central-1"]
    lab.start_traffic(threads=2)
    configs = federation(tmp_path, nats_server.url, labs)
    import yaml

    data = yaml.safe_load(configs["ca-central-1"].read_text())
    data["health"]["probes"].append(http_probe("database", free_port()))  # nothing listens there
    configs["ca-central-1"].write_text(yaml.safe_dump(data, sort_keys=False))

    code = await anyio.to_thread.run_sync(main, ["smoke", "--region", "ca-central-1", "--json", "--config",
                                                 str(configs["us-east-1"])])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1 and doc["ok"] is False
    assert {p["probe"]: p["failed"] for p in doc["probes"]} == {"service": False, "database": True}
    code = await anyio.to_thread.run_sync(main, ["smoke", "--region", "us-east-1", "--config",
                                                 str(configs["us-east-1"])])
    out = capsys.readouterr().out
    assert code == 0 and "smoke test of us-east-1 passed: 1 probe(s)" in out
    code = await anyio.to_thread.run_sync(main, ["smoke", "--region", "ap-southeast-1", "--config",
                                                 str(configs["us-east-1"])])
    assert code == 2 and "region ap-southeast-1 is not in the region map" in capsys.readouterr().err

    async with running_daemons({"ca-central-1": configs["ca-central-1"]}, blocked=UNUSED) as daemons:
        rt: Runtime = daemons["ca-central-1"].hooks.pm.get_plugin("deploy").runtime
        await until(lambda: rt.store is not None, what="the rollout bucket")
        await rt.start_rollout("api", "v2", "ca-central-1", False)
        assert rt.store is not None
        store = rt.store

        async def ended() -> Rollout | None:
            got = await store.get("api")
            return got[0] if got and not got[0].active else None
        done = await until(ended, timeout=60, what="the rollout to end")
    assert done.state == "failed" and done.reason.startswith("smoke test of ca-central-1 failed: database:")
    assert lab.proxy.weights() == {"stable": 100, "canary": 0}
