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
