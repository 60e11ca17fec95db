"""Routing in a real federation with the real membership and failover plugins: after a SIGKILL,
every survivor routes the dead region's tenants to the committed failover target, and never to
the dead region or outside the residency."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml

from meshd.testing import LocalFederation

ROOT = Path(__file__).resolve().parents[2]
REGIONS = ["eu-west-1", "eu-central-1", "us-east-1"]


def shared_files(tmp_path: Path) -> list[Path]:
    """tenants.yaml and dr_config.yaml cut down to the three regions."""
    src = tmp_path / "src"
    src.mkdir()
    tenants = yaml.safe_load((ROOT / "etc" / "tenants.yaml").read_text())["tenants"]
    (src / "tenants.yaml").write_text(yaml.safe_dump(
        {"tenants": {k: v for k, v in tenants.items() if v["residency"] in ("EU", "US")}}))
    dr = yaml.safe_load((ROOT / "etc" / "dr_config.yaml").read_text())
    dr["regions"] = {"eu-west-1": {"pair": "eu-central-1"}, "eu-central-1": {"pair": "eu-west-1"}, "us-east-1": {}}
    (src / "dr_config.yaml").write_text(yaml.safe_dump(dr))
    return [src / "tenants.yaml", src / "dr_config.yaml"]


def test_survivors_route_a_killed_regions_tenants_to_the_committed_target(
        tmp_path: Path, local_federation: Callable[..., LocalFederation]) -> None:
    fed = local_federation(regions=REGIONS, shared_files=shared_files(tmp_path),
                           config={"plugins": {"disabled": ["alerts", "metering", "keys"]}})
    fed.wait_for(lambda: all(fed.member_state(o, r) == "alive" for o in REGIONS for r in REGIONS if o != r),
                 30, what="every daemon sees every region alive")
    code, body = fed.http("us-east-1", "/v1/route?tenant=acme-eu&from=DE")
    assert code == 200 and body["region"] == "eu-central-1" and body["reason"] == "home"

    fed.kill("eu-central-1")
    survivors = ["eu-west-1", "us-east-1"]

    def redirected(region: str) -> dict | None:
        code, body = fed.http(region, "/v1/route?tenant=acme-eu&from=DE")
        return body if code == 200 and body.get("reason") == "failover" else None

    for region in survivors:
        body = fed.wait_for(lambda: redirected(region), 60, what=f"{region} routing acme-eu to the failover target")
        assert body["region"] == "eu-west-1" and body["jurisdiction"] == "EU" and body["answered_by"] == region
        routing = fed.status(region)["routing"]
        assert routing["failed_over"]["eu-central-1"]["target"] == "eu-west-1"
        assert routing["excluded"]["eu-central-1"] == "failed_over"
        # Every tenant, from everywhere: never the dead region, never outside the residency.
        for tenant, residency in (("acme-eu", "EU"), ("bistro-fr", "EU"), ("globex-us", "US")):
            for origin in ("DE", "NYC", "SIN", "eu-central-1"):
                code, body = fed.http(region, f"/v1/route?tenant={tenant}&from={origin}")
                assert code == 200, body
                assert body["jurisdiction"] == residency and body["region"] != "eu-central-1", body


def test_a_restarted_daemon_never_routes_to_a_failed_over_region(
        tmp_path: Path, local_federation: Callable[..., LocalFederation]) -> None:
    """Invariant 2 across a restart: from the moment its HTTP port answers, a daemon either refuses
    (503 not_ready) or routes around the failed-over region, even on a slow (WAN) link to NATS."""
    fed = local_federation(regions=REGIONS, shared_files=shared_files(tmp_path), proxies=True,
                           config={"plugins": {"disabled": ["alerts", "metering", "keys"]}})
    fed.wait_for(lambda: all(fed.member_state(o, r) == "alive" for o in REGIONS for r in REGIONS if o != r),
                 30, what="every daemon sees every region alive")
    fed.kill("eu-central-1")
    fed.wait_for(lambda: "eu-central-1" in fed.status("us-east-1")["routing"]["failed_over"], 60,
                 what="us-east-1 applying the committed failover of eu-central-1")

    fed.kill("us-east-1")
    fed.proxies["us-east-1"].set_latency((0.08, 0.15))  # bench/chaos.py's WAN profile
    fed.start_daemon("us-east-1", wait=False)
    answers: list[tuple[int, dict]] = []

    def routed() -> bool:
        code, body = fed.http("us-east-1", "/v1/route?tenant=acme-eu&from=DE")
        if code:
            answers.append((code, body))
        return code == 200

    fed.wait_for(routed, 60, interval=0.02, what="the restarted us-east-1 routing acme-eu")
    for code, body in answers:
        assert (code == 503 and body["error"] == "not_ready") or (code == 200 and body["region"] != "eu-central-1"), \
            (code, body)
    refused = [body for code, body in answers if code == 503]
    assert refused, "the restarted daemon answered routes before it was ready"
    assert answers[-1][1]["region"] == "eu-west-1" and answers[-1][1]["reason"] == "failover"
    assert any("failover.not_ready.decisions" in body["waiting_for"] for body in refused)
    assert fed.metric("us-east-1", "meshd_route_requests_total", api="http", result="not_ready") == len(refused)
