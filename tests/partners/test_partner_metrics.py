"""GET /v1/metrics in a region with metering and billing: counts from the registry, usage and MRR, no invented figure."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from meshd.testing import running_daemons

from .conftest import Federation, partner_configs

pytestmark = [pytest.mark.anyio, pytest.mark.nats]

ETC = Path(__file__).resolve().parents[2] / "etc"
METERS = {"api_requests": {"kind": "COUNT"}, "storage_gb_hours": {"kind": "SUM"},
          "active_users": {"kind": "UNIQUE_COUNT"}}


async def test_metrics_with_usage_and_mrr(tmp_path: Path, nats_server) -> None:
    configs = partner_configs(tmp_path, nats_server.url, {
        "partners": {"enabled": True, "port": 0},
        "metering": {"meters": METERS},
        "billing": {"matrix": str(ETC / "billing_matrix.yaml"), "tax_rates": str(ETC / "tax_rates.yaml"),
                    "fx_rates": str(ETC / "fx_rates.yaml")},
    })
    blocked = ["health", "failover", "routing", "alerts", "keys", "fencing"]
    async with running_daemons({"eu-west-1": configs["eu-west-1"]}, blocked=blocked) as daemons:
        fed = Federation(daemons, configs)
        rt = fed.runtime("eu-west-1")
        await rt.store.add_partner("Acme", "acme")
        _, fed.keys[("acme", "admin")] = await rt.store.create_key("acme", "admin")
        async with fed.client() as api:
            # plans come from the billing matrix now, not partners.plans
            r = await api.post("/v1/tenants", json={"name": "A", "region": "eu-west-1", "plan": "pro"})
            assert r.json()["type"].endswith("/unknown_plan") and "starter" in r.json()["detail"]
            r = await api.post("/v1/tenants", json={"name": "A", "region": "eu-west-1", "plan": "starter",
                                                    "currency": "XXX"})
            assert r.json()["field"] == "currency"
            a = (await api.post("/v1/tenants", json={"name": "A", "region": "eu-west-1", "plan": "starter",
                                                     "currency": "EUR"})).json()
            b = (await api.post("/v1/tenants", json={"name": "B", "region": "eu-west-1", "plan": "professional",
                                                     "currency": "EUR"})).json()
            await api.post(f"/v1/tenants/{b['id']}/suspend")

            now = datetime.now(UTC).isoformat()
            events = [{"id": f"e{i}", "source": "//api", "tenant": a["id"], "meter": "api_requests", "time": now,
                       "specversion": "1.0"} for i in range(3)]
            metering = daemons["eu-west-1"].hooks.pm.get_plugin("metering").runtime
            status, result = await metering.record(json.dumps(events).encode())
            assert status == 200 and not result["rejected"], result

            m = (await api.get("/v1/metrics")).json()
            assert m["tenants"] == {"total": 2, "by_status": {"active": 1, "suspended": 1},
                                    "by_region": {"eu-west-1": 2}, "by_plan": {"starter": 1, "professional": 1}}
            assert m["usage"]["meters"]["api_requests"] == "3", m
            assert m["mrr"] is not None, m["reasons"]
            # the billing plugin's own monthly fees (base plus add-ons) of the two tenants
            from datetime import date

            from meshd_plugins.billing.reports import monthly_fee
            directory, files = daemons["eu-west-1"].tenants, rt.billing_files()
            fees = sum(monthly_fee(t, directory.get(t), files, date.today()) for t in (a["id"], b["id"]))
            assert m["mrr"]["native"] == {"EUR": f"{fees:.2f}"}
            assert m["reasons"] == {}

            # a tenant that cannot be priced: MRR is null and says why, never a partial figure
            await api.post("/v1/tenants", json={"name": "C", "region": "eu-west-1", "plan": "starter"})
            m = (await api.get("/v1/metrics")).json()
            assert m["mrr"] is None and "MRR" in m["reasons"]["mrr"]


async def test_metrics_without_metering_or_billing_are_null_with_reasons(federation) -> None:
    async with federation.client(role="read") as api:
        m = (await api.get("/v1/metrics")).json()
    assert m["usage"] is None and m["mrr"] is None
    assert set(m["reasons"]) == {"usage", "mrr"}
