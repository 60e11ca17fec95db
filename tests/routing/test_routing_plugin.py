"""The routing plugin in real daemons on a real nats-server: the signed bus service, the local
HTTP route, membership and failover hooks, route filters, /status and /metrics."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import nats
import pytest
import yaml

import meshd
from meshd import Candidate, RouteRequest, hookimpl
from meshd.members import Member, MemberState
from meshd.natsserver import NatsServer
from meshd.testing import BUILTIN_PLUGINS, running_daemons, write_federation
from meshd.transport import RequestTimeout

pytestmark = pytest.mark.anyio

REGIONS = ["eu-west-1", "eu-central-1", "us-east-1"]
OTHERS = [p for p in BUILTIN_PLUGINS if p != "routing"]
ROOT = Path(__file__).resolve().parents[2]


def federation(tmp_path: Path, regions: list[str], nats_url: str) -> dict[str, Path]:
    """``meshd init`` with the sample tenants whose residency these regions cover."""
    region_map = yaml.safe_load((ROOT / "etc" / "region_map.yaml").read_text())["regions"]
    covered = {region_map[r]["jurisdiction"] for r in regions}
    tenants = yaml.safe_load((ROOT / "etc" / "tenants.yaml").read_text())["tenants"]
    kept = {name: t for name, t in tenants.items() if t["residency"] in covered}
    (tmp_path / "tenants.yaml").write_text(yaml.safe_dump({"tenants": kept}))
    return write_federation(tmp_path, regions, nats_url)


def http_get(daemon: Any, path: str) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{daemon.http.bound_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            raw, status = resp.read(), resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode()


async def ask(client: Any, target: str, body: dict[str, Any]) -> dict[str, Any]:
    env = await client.bus.request("route", "route.request", body, target=target, timeout=5)
    assert env.sender == target and env.type == "route.result"
    return env.body


def decision(region: str, term: int, action: str, target: str | None) -> meshd.Decision:
    voters = ("eu-west-1", "us-east-1")
    return meshd.Decision(region, term, action, target, voters, 0.0, "eu-west-1")  # type: ignore[arg-type]


async def test_bus_service_answers_signed_requests_and_follows_membership_and_failover(
        tmp_path: Path, nats_server: NatsServer) -> None:
    configs = federation(tmp_path, REGIONS, nats_server.url)
    async with running_daemons(configs, blocked=OTHERS) as ds:
        client, server = ds["us-east-1"], ds["eu-central-1"]

        reply = await ask(client, "eu-central-1", {"tenant": "acme-eu", "from": "DE"})
        assert reply["ok"] and reply["region"] == "eu-central-1" and reply["reason"] == "home"
        assert reply["answered_by"] == "eu-central-1" and reply["view"] == "live" and reply["residency"] == "EU"
        assert reply["endpoint"] == "https://eu-central-1.api.example.com"

        # An EU tenant asked about from New York still stays in the EU.
        reply = await ask(client, "eu-central-1", {"tenant": "bistro-fr", "from": [40.7, -74.0]})
        assert reply["ok"] and reply["jurisdiction"] == "EU"

        # The builtin failover action: eu-central-1's tenants go to the committed target.
        await server.hooks.failover_committed(server, decision("eu-central-1", 1, "failover", "eu-west-1"))
        reply = await ask(client, "eu-central-1", {"tenant": "acme-eu", "from": "DE"})
        assert (reply["region"], reply["reason"]) == ("eu-west-1", "failover")

        # Membership: the target dies too; nothing in the EU is eligible, and the answer says why.
        dead = Member("eu-west-1", MemberState.DEAD)
        await server.hooks.member_changed(server, dead, Member("eu-west-1", MemberState.SUSPECT))
        reply = await ask(client, "eu-central-1", {"tenant": "acme-eu", "from": "DE"})
        assert not reply["ok"] and reply["error"] == "no_eligible_region"
        assert reply["excluded"] == {"eu-central-1": "failed_over", "eu-west-1": "dead"}

        # Failback brings eu-central-1 back.
        await server.hooks.failover_committed(server, decision("eu-central-1", 1, "failback", None))
        reply = await ask(client, "eu-central-1", {"tenant": "acme-eu", "from": "DE"})
        assert reply["ok"] and reply["region"] == "eu-central-1"

        # Bad input gets an error reply, a counter, and the daemon keeps serving.
        for body, code in (({"from": "DE"}, "bad_request"), ({"tenant": "acme-eu", "from": 7}, "bad_request"),
                           ({"tenant": "nobody", "from": "DE"}, "unknown_tenant"),
                           ({"tenant": "acme-eu", "from": "Atlantis"}, "unknown_location"),
                           ({"tenant": "acme-eu", "from": "DE", "sovereignty": "us"}, "sovereignty_conflict")):
            reply = await ask(client, "eu-central-1", body)
            assert not reply["ok"] and reply["error"] == code, (body, reply)
        assert server.metrics.value("route_requests_total", api="bus", result="bad_request") == 2
        assert server.metrics.value("route_requests_total", api="bus", result="ok") == 4

        # Status and metrics reflect the view.
        status = await server.status()
        assert status["routing"]["excluded"] == {"eu-west-1": "dead"}
        assert status["routing"]["failed_over"] == {}
        assert status["routing"]["no_eligible_region"] == {"EU": 1}
        text = server.metrics.render().decode()
        assert 'meshd_route_decisions_total{region="eu-central-1"} 2.0' in text
        assert 'meshd_route_no_eligible_region_total{residency="EU"} 1.0' in text
        assert 'meshd_route_region_excluded{reason="dead",region="eu-west-1"} 1.0' in text

        # Unsigned requests are never answered: the bus drops them before the plugin sees them.
        raw = await nats.connect(nats_server.url)
        try:
            with pytest.raises(nats.errors.TimeoutError):
                await raw.request("meshd.test.route.us-east-1.eu-central-1",
                                  json.dumps({"tenant": "acme-eu", "from": "DE"}).encode(), timeout=0.5)
        finally:
            await raw.close()
        assert server.metrics.value("envelopes_rejected_total", reason="undecodable") >= 1


async def test_http_route_and_explain(tmp_path: Path, nats_server: NatsServer) -> None:
    configs = federation(tmp_path, REGIONS[:2], nats_server.url)
    async with running_daemons(configs, blocked=OTHERS) as ds:
        d = ds["eu-west-1"]
        status, body = await anyio.to_thread.run_sync(http_get, d, "/v1/route?tenant=bistro-fr&from=IE&session=s1")
        assert status == 200 and body["ok"] and body["region"] == "eu-west-1" and body["session"] == "s1"
        status, body = await anyio.to_thread.run_sync(http_get, d, "/v1/route?tenant=bistro-fr&from=nowhere")
        assert status == 400 and body["error"] == "unknown_location"
        status, body = await anyio.to_thread.run_sync(http_get, d, "/v1/route?from=IE")
        assert status == 400 and body["error"] == "bad_request" and body["field"] == "tenant"
        for region in REGIONS[:2]:
            await d.hooks.member_changed(d, Member(region, MemberState.LEFT) if region != d.region else
                                         Member(region, MemberState.ALIVE, health="down"), None)
        status, body = await anyio.to_thread.run_sync(http_get, d, "/v1/route?tenant=bistro-fr&from=IE")
        assert status == 503 and body["error"] == "no_eligible_region"
        status, body = await anyio.to_thread.run_sync(http_get, d, "/v1/route/explain?tenant=bistro-fr&from=IE")
        assert status == 200 and [r["excluded"] for r in body["regions"]] == ["down", "left"]
        assert d.metrics.value("route_requests_total", api="http", result="no_eligible_region") == 1


class OnlyWest:
    """A route filter plugin: keeps only eu-west-1 (and tries to smuggle in a US region)."""

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def meshd_route_filter(self, daemon: Any, request: RouteRequest, candidates: Any) -> list[Any]:
        self.calls += 1
        intruder = Candidate("us-east-1", "US", "https://x", 0.0, "estimated", 100, None, False)
        return [c for c in candidates if c.region == "eu-west-1"] + [intruder]


class BrokenFilter:
    @hookimpl
    def meshd_route_filter(self, daemon: Any, request: Any, candidates: Any) -> list[Any]:
        raise RuntimeError("filter bug")


async def test_route_filters_from_other_plugins_narrow_and_failing_ones_are_isolated(
        tmp_path: Path, nats_server: NatsServer) -> None:
    configs = federation(tmp_path, REGIONS, nats_server.url)
    async with running_daemons({"eu-central-1": configs["eu-central-1"]}, blocked=OTHERS,
                               extra_plugins=[("only-west", OnlyWest), ("broken", BrokenFilter)]) as ds:
        d = ds["eu-central-1"]
        reply = d.hooks.pm.get_plugin("routing").answer(d, {"tenant": "acme-eu", "from": "DE"}, "test")
        assert reply["ok"] and reply["region"] == "eu-west-1"
        assert d.hooks.pm.get_plugin("only-west").calls == 1
        assert d.metrics.value("plugin_errors_total", plugin="broken", hook="meshd_route_filter") == 1


async def test_a_request_to_a_region_that_is_not_running_times_out(tmp_path: Path, nats_server: NatsServer) -> None:
    configs = federation(tmp_path, REGIONS, nats_server.url)
    async with running_daemons({"us-east-1": configs["us-east-1"]}, blocked=OTHERS) as ds:
        with pytest.raises(RequestTimeout):
            await ds["us-east-1"].bus.request("route", "route.request", {"tenant": "acme-eu", "from": "DE"},
                                              target="eu-west-1", timeout=0.5)


async def test_reload_health_verdict_and_bus_loss(tmp_path: Path, nats_server: NatsServer) -> None:
    configs = federation(tmp_path, REGIONS[:2], nats_server.url)
    async with running_daemons({"eu-west-1": configs["eu-west-1"]}, blocked=OTHERS) as ds:
        d = ds["eu-west-1"]
        plugin = d.hooks.pm.get_plugin("routing")

        def ask_local() -> dict[str, Any]:
            return plugin.answer(d, {"tenant": "bistro-fr", "from": "IE", "session": "s"}, "test")

        assert ask_local()["region"] == "eu-west-1"
        await d.hooks.failover_committed(d, decision("eu-central-1", 5, "failover", "eu-west-1"))

        # This region's own verdict (from the health plugin) takes it out of rotation.
        report = meshd.HealthReport(meshd.HealthStatus.DOWN, ("probe api failed",))
        await d.hooks.region_health_changed(d, report, None)
        reply = ask_local()
        assert not reply["ok"] and reply["excluded"] == {"eu-central-1": "failed_over", "eu-west-1": "down"}
        await d.hooks.region_health_changed(d, meshd.HealthReport(meshd.HealthStatus.HEALTHY), report)

        # Bus lost: answers carry view=stale until it is back.
        await d.hooks.bus_state(d, False)
        assert ask_local()["view"] == "stale" and (await d.status())["routing"]["view"] == "stale"
        await d.hooks.bus_state(d, True)
        assert ask_local()["view"] == "live"

        # A reload applies new settings and keeps the live state (the failover, the session).
        data = yaml.safe_load(configs["eu-west-1"].read_text())
        data["routing"] = {"rtt": {"IE": {"eu-west-1": 40}}, "carbon_aware": True}
        configs["eu-west-1"].write_text(yaml.safe_dump(data))
        assert await d.reload()
        reply = ask_local()
        assert reply["region"] == "eu-west-1" and reply["reason"] == "sticky"
        assert reply["latency_ms"] == 40 and reply["latency_source"] == "configured"
        assert (await d.status())["routing"]["failed_over"] == {"eu-central-1": {"target": "eu-west-1", "term": 5}}

        # An invalid reload is refused by the routing checks; the running config stays.
        data["routing"] = {"rtt": {"IE": {"mars-1": 1}}}
        configs["eu-west-1"].write_text(yaml.safe_dump(data))
        assert not await d.reload()
        assert ask_local()["latency_ms"] == 40


async def test_an_engine_bug_costs_one_error_reply_not_the_daemon(tmp_path: Path, nats_server: NatsServer) -> None:
    configs = federation(tmp_path, REGIONS, nats_server.url)
    async with running_daemons({r: configs[r] for r in ("eu-west-1", "us-east-1")}, blocked=OTHERS) as ds:
        server = ds["eu-west-1"]
        engine = server.hooks.pm.get_plugin("routing").engine

        def broken(*_a: Any, **_k: Any) -> Any:
            raise KeyError("boom")

        engine.route = broken
        reply = await ask(ds["us-east-1"], "eu-west-1", {"tenant": "acme-eu", "from": "DE"})
        assert not reply["ok"] and reply["error"] == "internal_error"
        assert server.metrics.value("route_requests_total", api="bus", result="internal_error") == 1
        del engine.route  # the class's method again
        reply = await ask(ds["us-east-1"], "eu-west-1", {"tenant": "acme-eu", "from": "DE"})
        assert reply["ok"]
