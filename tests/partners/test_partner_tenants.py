"""Tenants through the partner API of real daemons: create, list, get, change plan, suspend, delete, branding."""

from __future__ import annotations

import pytest

from meshd.testing import until

pytestmark = [pytest.mark.anyio, pytest.mark.nats]

BRAND = {"primary_color": "#1A2B3C", "company_name": "Bistro SARL", "logo_url": "https://cdn.example.com/l.png"}


async def test_tenant_lifecycle(federation) -> None:
    async with federation.client() as api:
        r = await api.post("/v1/tenants", json={"name": "Bistro", "region": "eu-west-1", "plan": "starter",
                                                "branding": BRAND})
        assert r.status_code == 201, r.text
        tenant = r.json()
        assert tenant["id"].startswith("t_") and len(tenant["id"]) == 18
        assert (tenant["partner"], tenant["plan"], tenant["residency"], tenant["home"], tenant["status"]) == (
            "acme", "starter", "EU", "eu-west-1", "active")
        assert tenant["branding"] == BRAND
        assert tenant["created"].endswith("Z")
        assert r.headers["location"] == f"/v1/tenants/{tenant['id']}"
        tid = tenant["id"]

        r = await api.get(f"/v1/tenants/{tid}")
        assert r.status_code == 200 and r.json() == tenant

        r = await api.patch(f"/v1/tenants/{tid}", json={"plan": "pro"}, headers={"If-Match": f'"{tenant["revision"]}"'})
        assert r.status_code == 200, r.text
        assert r.json()["plan"] == "pro" and r.json()["revision"] > tenant["revision"]
        # the same revision again: the first change won, this one is a conflict and changes nothing
        r = await api.patch(f"/v1/tenants/{tid}", json={"plan": "starter"},
                            headers={"If-Match": f'"{tenant["revision"]}"'})
        assert r.status_code == 409 and r.json()["type"].endswith("/conflict")
        assert (await api.get(f"/v1/tenants/{tid}")).json()["plan"] == "pro"

        r = await api.put(f"/v1/tenants/{tid}/branding", json={"primary_color": "#ffffff", "company_name": "New"})
        assert r.status_code == 200 and r.json()["branding"] == {"primary_color": "#FFFFFF", "company_name": "New",
                                                                 "logo_url": None}

        r = await api.post(f"/v1/tenants/{tid}/suspend")
        assert r.status_code == 200 and r.json()["status"] == "suspended"

        r = await api.get("/v1/tenants", params={"status": "suspended"})
        assert [t["id"] for t in r.json()["items"]] == [tid]

        r = await api.delete(f"/v1/tenants/{tid}")
        assert r.status_code == 200 and r.json()["status"] == "deleted"
        assert (await api.get(f"/v1/tenants/{tid}")).status_code == 404
        assert [t["id"] for t in (await api.get("/v1/tenants")).json()["items"]] == []
        assert [t["id"] for t in (await api.get("/v1/tenants?status=deleted")).json()["items"]] == [tid]

    # the other region serves the same registry, as soon as its watch has the change
    async with federation.client("eu-central-1", role="read") as api:
        async def deleted_there() -> bool:
            r = await api.get("/v1/tenants", params={"status": "deleted"})
            return [t["id"] for t in r.json()["items"]] == [tid]
        await until(deleted_there, 2, "eu-central-1 lists the tombstone")


async def test_list_pages_through_every_tenant(federation) -> None:
    async with federation.client(role="deployer") as api:
        made = set()
        for i in range(5):
            r = await api.post("/v1/tenants", json={"name": f"T{i}", "region": "eu-central-1", "plan": "pro"})
            assert r.status_code == 201, r.text
            made.add(r.json()["id"])
        seen: list[str] = []
        cursor = None
        while True:
            r = await api.get("/v1/tenants", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
            assert r.status_code == 200
            page = r.json()
            assert len(page["items"]) <= 2
            seen += [t["id"] for t in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == sorted(made)
