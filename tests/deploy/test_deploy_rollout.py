"""Rollouts end to end: in-process daemons on a real nats-server drive a real HAProxy under real traffic."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from meshd.testing import running_daemons, until, write_federation
from meshd_plugins.deploy import Rollout, verify_chain
from meshd_plugins.deploy.runtime import Runtime
from meshd_plugins.deploy.store import Conflict

from .rolloutlab import AlertLog, Lab, deploy_patch, write_pipeline

pytestmark = [pytest.mark.anyio, pytest.mark.nats]

REGION = "eu-west-1"
UNUSED = ("partners", "billing", "metering", "audit", "routing")


@contextlib.asynccontextmanager
async def federation(tmp_path: Path, nats_url: str, lab: Lab, regions: list[str] | None = None,
                     **pipeline: Any) -> AsyncIterator[tuple[dict[str, Any], AlertLog]]:
    regions = regions or [REGION]
    path = write_pipeline(tmp_path / "region_pipeline.yaml", [[REGION]], {REGION: lab.driver()}, **pipeline)
    configs = write_federation(tmp_path, regions, nats_url, patch=deploy_patch(path))
    alerts = AlertLog()
    async with running_daemons(configs, extra_plugins=[("alert-log", alerts)], blocked=UNUSED) as daemons:
        yield daemons, alerts


def runtime(daemon: Any) -> Runtime:
    rt: Runtime = daemon.hooks.pm.get_plugin("deploy").runtime
    return rt


async def rollout(daemon: Any) -> Rollout:
    rt = runtime(daemon)
    assert rt.store is not None
    got = await rt.store.get("api")
    assert got is not None
    return got[0]


async def finished(daemon: Any) -> Rollout | None:
    r = await rollout(daemon)
    return None if r.active else r


async def started(daemon: Any) -> Rollout:
    rt = runtime(daemon)
    await until(lambda: rt.store is not None, what="the rollout bucket open")
    return await rt.start_rollout("api", "v2", REGION, False)


def steps_logged(r: Rollout, kind: str = "step") -> list[int]:
    return [e["data"]["weight"] for e in r.log if e["kind"] == kind]


async def test_a_good_version_is_promoted_through_every_step(tmp_path: Path, nats_server: Any,
                                                             labs: dict[str, Lab]) -> None:
    lab = labs[REGION]
    lab.start_traffic()
    async with federation(tmp_path, nats_server.url, lab) as (daemons, alerts):
        await started(daemons[REGION])
        done = await until(lambda: finished(daemons[REGION]), timeout=60, what="the rollout to finish")
    assert done.state == "promoted", done.reason
    assert steps_logged(done) == [5, 10, 25, 50, 100]
    assert steps_logged(done, "applied") == [5, 10, 25, 50, 100]
    assert [e["data"]["step"] for e in done.log if e["kind"] == "check_passed"] == [0, 1, 2, 3, 4]
    assert verify_chain(done.log) is None
    assert lab.proxy.weights() == {"stable": 0, "canary": 100}
    assert alerts.named("RolloutRolledBack") == alerts.named("RolloutFailed") == []


async def test_a_version_with_10_percent_5xx_is_rolled_back_at_the_first_failed_check(
        tmp_path: Path, nats_server: Any, labs: dict[str, Lab]) -> None:
    lab = labs[REGION]
    lab.canary.error_rate = 0.1
    traffic = lab.start_traffic()
    async with federation(tmp_path, nats_server.url, lab) as (daemons, alerts):
        await started(daemons[REGION])
        done = await until(lambda: finished(daemons[REGION]), timeout=60, what="the rollout to finish")
        await until(lambda: alerts.named("RolloutRolledBack"), what="the alert")
    assert done.state == "rolled_back"
    assert "success rate" in done.reason and "below 99 %" in done.reason
    assert steps_logged(done) == [5]  # the first check failed: it never went past the first step
    assert [e["kind"] for e in done.log][-1] == "rolled_back"
    assert done.regions[REGION].restored
    assert lab.proxy.weights() == {"stable": 100, "canary": 0}
    assert len(alerts.named("RolloutRolledBack")) == 1
    assert alerts.named("RolloutRolledBack")[0].labels["service"] == "api"
    with traffic.lock:
        before = traffic.counts.copy()
    await until(lambda: sum(traffic.counts.values()) > sum(before.values()) + 200, what="more traffic")
    with traffic.lock:
        after = traffic.counts.copy()
    assert all(after[k] == before[k] for k in after if k[0] == "canary"), "the canary still gets traffic"


async def test_a_slow_version_is_rolled_back(tmp_path: Path, nats_server: Any, labs: dict[str, Lab]) -> None:
    lab = labs[REGION]
    lab.canary.latency = 0.6
    lab.start_traffic(threads=6)
    async with federation(tmp_path, nats_server.url, lab, analysis={"min_requests": 3}) as (daemons, alerts):
        await started(daemons[REGION])
        done = await until(lambda: finished(daemons[REGION]), timeout=60, what="the rollout to finish")
    assert done.state == "rolled_back"
    assert "latency" in done.reason and "above 500 ms" in done.reason
    assert lab.proxy.weights() == {"stable": 100, "canary": 0}
    assert len(alerts.named("RolloutRolledBack")) == 1


async def test_a_version_without_traffic_never_promotes(tmp_path: Path, nats_server: Any,
                                                        labs: dict[str, Lab]) -> None:
    lab = labs[REGION]  # no traffic at all
    async with federation(tmp_path, nats_server.url, lab, deadline="2500ms") as (daemons, alerts):
        daemon = daemons[REGION]
        await started(daemon)
        await until(lambda: daemon.metrics.value("deploy_checks_total", verdict="inconclusive") >= 3,
                    what="three inconclusive checks")
        waiting = await rollout(daemon)
        assert waiting.state == "running" and waiting.regions[REGION].step == 0
        assert lab.proxy.weights() == {"stable": 95, "canary": 5}
        done = await until(lambda: finished(daemon), timeout=30, what="the progress deadline")
    assert done.state == "failed" and "progress deadline" in done.reason
    assert steps_logged(done) == [5]
    assert not [e for e in done.log if e["kind"] == "check_passed"]
    assert lab.proxy.weights() == {"stable": 100, "canary": 0}
    assert len(alerts.named("RolloutFailed")) == 1


async def test_one_rollout_at_a_time_and_a_freeze_window_blocks_a_start(
        tmp_path: Path, nats_server: Any, labs: dict[str, Lab]) -> None:
    lab = labs[REGION]
    everyday = [{"name": "always", "time_intervals": [{"times": [{"start_time": "00:00", "end_time": "24:00"}]}]}]
    async with federation(tmp_path, nats_server.url, lab, regions=[REGION, "eu-central-1"],
                          deadline="1h") as (daemons, _):
        first = await started(daemons[REGION])
        peer = runtime(daemons["eu-central-1"])
        await until(lambda: peer.store is not None, what="the peer's bucket")
        with pytest.raises(Conflict, match=f"rollout {first.id} of api .* is running: one at a time") as refused:
            await peer.start_rollout("api", "v3", REGION, False)
        assert refused.value.code == "running"
        aborted = await peer.operator("api", "abort")
        assert aborted.state == "aborted"
        assert peer.pipeline is not None
        write_pipeline(peer.pipeline.path, [[REGION]], {REGION: lab.driver()}, freeze=everyday)
        peer.reload()
        with pytest.raises(Conflict, match="freeze window 'always' is in force") as frozen:
            await peer.start_rollout("api", "v3", REGION, False)
        assert frozen.value.code == "frozen"
        with pytest.raises(Conflict, match="service 'web' is not in"):
            await peer.start_rollout("web", "v3", REGION, False)


async def test_the_command_driver_with_probe_checks(tmp_path: Path, nats_server: Any, labs: dict[str, Lab]) -> None:
    lab = labs[REGION]  # only its canary service is used: the command driver moves no real traffic
    weights = tmp_path / "weights"
    script = f"import json, sys; open({str(weights)!r}, 'a').write(str(json.load(sys.stdin)['canary_weight']) + ' ')"
    driver = {"kind": "command", "argv": [sys.executable, "-c", script], "timeout": "10s"}
    path = write_pipeline(tmp_path / "region_pipeline.yaml", [[REGION]], {REGION: driver}, steps=[50, 100],
                          analysis={"source": "probes", "probes": ["canary"], "min_samples": 3})
    probe = {"name": "canary", "kind": "http", "url": f"http://127.0.0.1:{lab.canary.port}/", "interval": "1s",
             "timeout": "2s", "severity": "critical"}
    configs = write_federation(tmp_path, [REGION], nats_server.url,
                               patch={**deploy_patch(path), "health": {"probes": [probe]}})
    async with running_daemons(configs, blocked=UNUSED) as daemons:
        daemon = daemons[REGION]
        await started(daemon)
        good = await until(lambda: finished(daemon), timeout=60, what="the first rollout")
        assert good.state == "promoted" and weights.read_text().split() == ["50", "100"]
        lab.canary.error_rate = 1.0
        weights.write_text("")
        await runtime(daemon).start_rollout("api", "v3", REGION, False)
        bad = await until(lambda: ended_version(daemon, "v3"), timeout=60, what="the second rollout")
        assert bad.state == "rolled_back" and "probe(s) canary failing" in bad.reason
        assert weights.read_text().split() == ["50", "0"]
        # Every probe passes, but each takes 600 ms: the p99 of the interval's probe latencies breaks 500 ms.
        # A probe round that slow fits twice in a 1.5 s interval: a reload sets that, and min_samples 2.
        write_pipeline(path, [[REGION]], {REGION: driver}, steps=[50, 100],
                       analysis={"source": "probes", "probes": ["canary"], "min_samples": 2, "interval": "1500ms"})
        runtime(daemon).reload()
        lab.canary.error_rate, lab.canary.latency = 0.0, 0.6
        await runtime(daemon).start_rollout("api", "v4", REGION, False)
        slow = await until(lambda: ended_version(daemon, "v4"), timeout=60, what="the third rollout")
    assert slow.state == "rolled_back" and "probe p99" in slow.reason and "above 500 ms" in slow.reason
    assert slow.log[-1]["data"]["check"]["requests"] >= 2  # judged on min_samples samples at least


async def ended_version(daemon: Any, version: str) -> Rollout | None:
    r = await rollout(daemon)
    return r if r.version == version and not r.active else None


async def test_a_corrupt_record_is_counted_kept_and_refused(tmp_path: Path, nats_server: Any,
                                                             labs: dict[str, Lab]) -> None:
    async with federation(tmp_path, nats_server.url, labs[REGION]) as (daemons, _):
        daemon = daemons[REGION]
        rt = runtime(daemon)
        await until(lambda: rt.store is not None, what="the rollout bucket")
        assert rt.store is not None
        await rt.store.kv.put("rollout.api", b"{not json")
        await until(lambda: daemon.metrics.value("deploy_errors_total", op="record") >= 1, what="the count")
        with pytest.raises(Conflict, match=r"the rollout record rollout.api \(revision \d+\) is not a rollout"):
            await rt.start_rollout("api", "v2", REGION, False)
        entry = await rt.store.kv.get("rollout.api")
        assert entry is not None and entry.value == b"{not json"
        await rt.store.kv.delete("rollout.api")  # the operator removed it: the daemon serves on
        assert (await rt.start_rollout("api", "v2", REGION, False)).version == "v2"


async def test_a_committed_failover_of_the_region_ends_its_rollout_at_once(
        tmp_path: Path, nats_server: Any, labs: dict[str, Lab]) -> None:
    lab = labs[REGION]
    lab.start_traffic()
    async with federation(tmp_path, nats_server.url, lab, regions=[REGION, "eu-central-1"],
                          deadline="1h") as (daemons, alerts):
        await started(daemons[REGION])
        await until(lambda: lab.proxy.weights()["canary"] == 5, what="the first step")
        # What the failover plugin hands every daemon once a failover of the region is committed.
        peer = runtime(daemons["eu-central-1"])
        peer.failed_over(REGION, "failover")
        runtime(daemons[REGION]).failed_over(REGION, "failover")
        done = await until(lambda: finished(daemons[REGION]), timeout=30, what="the rollout to end")
        await until(lambda: alerts.named("RolloutFailed"), what="the alert")
    assert done.state == "failed" and done.reason == f"region {REGION} is failed over"
    assert lab.proxy.weights() == {"stable": 100, "canary": 0}
    assert len(alerts.named("RolloutFailed")) == 1
