"""The fencing plugin in a real daemon on a real nats-server: a failover of its own region in force
fences it (as the failover plugin would tell it, through meshd_failover_committed); the hook, the
alert, routing, health and /healthz follow; a reload that switches fencing off lifts the fence."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

import meshd
from meshd import hookimpl
from meshd.natsserver import NatsServer
from meshd.testing import BUILTIN_PLUGINS, running_daemons, until, write_federation

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
REGION = "eu-west-1"
BLOCKED = [p for p in BUILTIN_PLUGINS if p not in ("fencing", "membership", "routing", "health")]


class Recorder:
    """Records what the fencing plugin tells other plugins."""

    def __init__(self) -> None:
        self.fences: list[tuple[bool, str]] = []
        self.alerts: list[meshd.Alert] = []

    @hookimpl
    def meshd_region_fenced(self, fenced: bool, reason: str) -> None:
        self.fences.append((fenced, reason))

    @hookimpl
    def meshd_alert(self, alert: meshd.Alert) -> None:
        if alert.name == "RegionFenced":
            self.alerts.append(alert)


async def http_get(daemon: Any, path: str) -> tuple[int, Any]:
    """GET from the daemon's local HTTP endpoint, off the loop the daemon serves it from."""
    return await anyio.to_thread.run_sync(_get, daemon, path)


def _get(daemon: Any, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{daemon.http.bound_port}{path}", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_a_failover_of_its_region_fences_it_and_switching_fencing_off_lifts_the_fence(
        tmp_path: Path, nats_server: NatsServer) -> None:
    tenants = yaml.safe_load((ROOT / "etc" / "tenants.yaml").read_text())["tenants"]
    (tmp_path / "tenants.yaml").write_text(yaml.safe_dump({"tenants": {"bistro-fr": tenants["bistro-fr"]}}))
    configs = write_federation(tmp_path, [REGION, "eu-central-1"], nats_server.url, patch={"lang": "de"})
    async with running_daemons({REGION: configs[REGION]}, blocked=BLOCKED,
                               extra_plugins=[("recorder", Recorder)]) as daemons:
        daemon = daemons[REGION]
        recorder = daemon.hooks.pm.get_plugin("recorder")
        routing = daemon.hooks.pm.get_plugin("routing")
        assert routing.engine.route_filter is None  # unfenced, routing calls no filter at all
        code, body = await http_get(daemon, f"/v1/route?tenant=bistro-fr&from={REGION}")
        assert code == 200 and body["region"] == REGION and "fenced" not in body

        await daemon.hooks.failover_committed(daemon, meshd.Decision(
            REGION, 1, "failover", "eu-central-1", ("eu-central-1", "us-east-1"), 0.0, "eu-central-1"))
        await until(lambda: recorder.fences, 10, what="the fence hook")
        assert recorder.fences == [(True, "failed_over")]
        [alert] = recorder.alerts
        assert alert.status == "firing" and alert.labels == {"alertname": "RegionFenced", "severity": "critical",
                                                             "region": REGION}
        assert alert.annotations["summary"] == "Region eu-west-1 hat sich abgeschottet"  # config lang: de
        assert "ein beschlossenes Failover von eu-west-1 ist in Kraft" in alert.annotations["description"]

        status = await daemon.status()
        assert status["fencing"]["fenced"] and status["fencing"]["failover"] == {"term": 1, "target": "eu-central-1"}
        assert status["health"]["status"] == "fenced" and status["health"]["fenced"]["reason"] == "failed_over"
        code, body = await http_get(daemon, f"/v1/route?tenant=bistro-fr&from={REGION}")
        assert code == 200 and body["region"] == "eu-central-1" and body["fenced"] == "failed_over"
        code, body = await http_get(daemon, "/healthz")
        assert code == 503 and {"name": "fencing", "ok": False, "detail": "fenced: failed_over", "fenced": True,
                                "reason": "failed_over"} in body["checks"]
        assert daemon.metrics.value("fenced") == 1
        assert daemon.hooks.pm.has_plugin("fencing-route-filter") and routing.engine.route_filter is not None

        raw = yaml.safe_load(configs[REGION].read_text())
        configs[REGION].write_text(yaml.safe_dump({**raw, "fencing": {"enabled": False}}))
        assert await daemon.reload()
        await until(lambda: len(recorder.fences) == 2, 10, what="the fence lifted")
        assert recorder.fences[-1] == (False, "disabled")
        assert [a.status for a in recorder.alerts] == ["firing", "resolved"]
        assert not daemon.hooks.pm.has_plugin("fencing-route-filter") and routing.engine.route_filter is None
        status = await daemon.status()
        assert status["fencing"]["enabled"] is False and status["health"]["status"] == "healthy"
        assert daemon.metrics.value("fenced") == 0
        code, body = await http_get(daemon, "/healthz")
        assert code == 200 and "fenced" not in (await http_get(daemon, "/v1/route?tenant=bistro-fr&from=DE"))[1]


async def test_without_membership_fencing_is_idle_and_says_so(tmp_path: Path, nats_server: NatsServer,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    configs = write_federation(tmp_path, [REGION, "eu-central-1"], nats_server.url)
    async with running_daemons({REGION: configs[REGION]}, blocked=BLOCKED + ["membership"]) as daemons:
        daemon = daemons[REGION]
        status = await daemon.status()
        assert status["fencing"]["enabled"] is False and status["fencing"]["fenced"] is False
        assert "after_s" not in status["fencing"]
        assert "fencing is idle: the membership plugin is not loaded" in caplog.text
        code, body = await http_get(daemon, "/healthz")
        assert code == 200 and {"name": "fencing", "ok": True, "detail": "not fenced", "fenced": False} in body["checks"]
