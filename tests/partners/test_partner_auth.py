"""Who may call: missing or malformed keys, partner isolation (404), roles, revocation in every region, rate limit."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from meshd.testing import until

pytestmark = [pytest.mark.anyio, pytest.mark.nats]


async def _tenant(federation, partner: str = "globex") -> dict:
    async with federation.client(partner=partner) as api:
        r = await api.post("/v1/tenants", json={"name": f"{partner} shop", "region": "eu-west-1", "plan": "starter"})
        assert r.status_code == 201, r.text
        return r.json()


def _problem(r: httpx.Response, code: str, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"] == f"https://meshd.dev/problems/{code}" and body["status"] == status
    assert body["title"] and body["detail"]
    return body


async def test_missing_or_malformed_keys_are_refused(federation) -> None:
    url = federation.url("eu-west-1")
    good = federation.keys[("acme", "admin")]
    async with httpx.AsyncClient(base_url=url) as raw:
        _problem(await raw.get("/v1/tenants"), "unauthorized", 401)
        _problem(await raw.get("/v1/tenants", headers={"Authorization": f"Bearer {good}"}), "unauthorized", 401)
        for bad in ("mpk_short_x", good[:-1] + ("A" if good[-1] != "A" else "B"), "Basic abc", good + "x"):
            r = await raw.get("/v1/tenants", headers={"Authorization": f"Bearer {bad}", "Meshd-Partner": "acme"})
            _problem(r, "unauthorized", 401)
        # a live key of acme presented as globex's
        r = await raw.get("/v1/tenants", headers={"Authorization": f"Bearer {good}", "Meshd-Partner": "globex"})
        _problem(r, "unauthorized", 401)
        r = await raw.get("/v1/tenants", headers={"Authorization": f"Bearer {good}", "Meshd-Partner": "acme"})
        assert r.status_code == 200


async def test_another_partners_tenant_is_not_found_on_every_route(federation) -> None:
    theirs = await _tenant(federation, "globex")
    tid = theirs["id"]
    async with federation.client(partner="acme") as api:
        calls = [
            api.get(f"/v1/tenants/{tid}"),
            api.patch(f"/v1/tenants/{tid}", json={"plan": "pro"}),
            api.post(f"/v1/tenants/{tid}/suspend"),
            api.put(f"/v1/tenants/{tid}/branding", json={"primary_color": "#000000", "company_name": "X"}),
            api.delete(f"/v1/tenants/{tid}"),
            api.post("/v1/licenses", json={"tenant": tid, "plan": "pro"}),
        ]
        for call in calls:
            _problem(await call, "not_found", 404)
        listed = (await api.get("/v1/tenants")).json()["items"]
        assert tid not in [t["id"] for t in listed]
        metrics = (await api.get("/v1/metrics")).json()
        assert metrics["tenants"]["total"] == 0
        their_key = federation.keys[("globex", "read")].split("_")[1]
        _problem(await api.delete(f"/v1/keys/{their_key}"), "not_found", 404)
        assert their_key not in [k["key_id"] for k in (await api.get("/v1/keys")).json()["items"]]
    async with federation.client(partner="globex") as api:
        assert (await api.get(f"/v1/tenants/{tid}")).json() == theirs  # unchanged
    async with federation.client(partner="globex", role="read") as api:
        assert (await api.get("/v1/tenants")).status_code == 200  # its key still works


async def test_roles(federation) -> None:
    mine = await _tenant(federation, "acme")
    async with federation.client(role="read") as api:
        assert (await api.get(f"/v1/tenants/{mine['id']}")).status_code == 200
        assert (await api.get("/v1/metrics")).status_code == 200
        _problem(await api.post("/v1/tenants", json={"name": "x", "region": "eu-west-1", "plan": "pro"}),
                 "forbidden", 403)
        _problem(await api.patch(f"/v1/tenants/{mine['id']}", json={"plan": "pro"}), "forbidden", 403)
        _problem(await api.get("/v1/keys"), "forbidden", 403)
    async with federation.client(role="deployer") as api:
        assert (await api.patch(f"/v1/tenants/{mine['id']}", json={"plan": "pro"})).status_code == 200
        _problem(await api.get("/v1/keys"), "forbidden", 403)
        _problem(await api.post("/v1/keys", json={"role": "admin"}), "forbidden", 403)
    async with federation.client(role="admin") as api:
        r = await api.get("/v1/keys")
        assert r.status_code == 200 and {k["role"] for k in r.json()["items"]} == {"admin", "deployer", "read"}
        assert all("hash" not in k and "key" not in k for k in r.json()["items"])


async def test_a_revoked_key_is_refused_in_every_region_within_a_second(federation) -> None:
    async with federation.client(role="admin") as admin:
        r = await admin.post("/v1/keys", json={"role": "read"})
        assert r.status_code == 201
        new = r.json()
        assert new["key"].startswith(f"mpk_{new['key_id']}_")
    headers = {"Authorization": f"Bearer {new['key']}", "Meshd-Partner": "acme"}
    clients = {region: httpx.AsyncClient(base_url=federation.url(region), headers=headers)
               for region in ("eu-west-1", "eu-central-1")}
    try:
        for region, client in clients.items():
            await until(lambda: federation.runtime(region).store.keys.get(new["key_id"]) is not None, 5)
            assert (await client.get("/v1/tenants")).status_code == 200, region
        async with federation.client(region="eu-central-1", role="admin") as admin:
            r = await admin.delete(f"/v1/keys/{new['key_id']}")
            assert r.status_code == 200 and r.json()["revoked"]
        revoked_at = time.monotonic()
        for region, client in clients.items():
            async def refused() -> bool:
                return (await client.get("/v1/tenants")).status_code == 401
            await until(refused, 1.0, f"{region} refuses the revoked key")
        assert time.monotonic() - revoked_at < 1.0
    finally:
        for client in clients.values():
            await client.aclose()
    async with federation.client(role="admin") as admin:
        _problem(await admin.delete("/v1/keys/aaaaaaaaaaaa"), "not_found", 404)


async def test_rate_limit_answers_429_with_retry_after(tmp_path, nats_server) -> None:
    from meshd.testing import running_daemons

    from .conftest import OTHER_PLUGINS, Federation, partner_configs

    configs = partner_configs(tmp_path, nats_server.url,
                              {"partners": {"enabled": True, "port": 0, "plans": ["pro"],
                                            "rate_limit": {"per_second": 0.5, "burst": 3}}})
    async with running_daemons({"eu-west-1": configs["eu-west-1"]}, blocked=OTHER_PLUGINS) as daemons:
        fed = Federation(daemons, configs)
        store = fed.runtime("eu-west-1").store
        await store.add_partner("Acme", "acme")
        _, fed.keys[("acme", "read")] = await store.create_key("acme", "read")
        _, fed.keys[("acme", "admin")] = await store.create_key("acme", "admin")
        async with fed.client(role="read") as api:
            codes = [(await api.get("/v1/metrics")).status_code for _ in range(3)]
            assert codes == [200, 200, 200]
            r = await api.get("/v1/metrics")
            body = _problem(r, "rate_limited", 429)
            assert 1 <= int(r.headers["retry-after"]) <= 2, r.headers
            assert "s" in body["detail"]
        async with fed.client(role="admin") as other:  # limits are per key
            assert (await other.get("/v1/metrics")).status_code == 200
        # guessing the secret of a key costs the guesser that key's rate, before any hash is computed
        admin = fed.keys[("acme", "admin")]
        guess = admin[:-4] + ("AAAA" if not admin.endswith("AAAA") else "BBBB")
        async with httpx.AsyncClient(base_url=fed.url("eu-west-1"),
                                     headers={"Authorization": f"Bearer {guess}", "Meshd-Partner": "acme"}) as bad:
            codes = [(await bad.get("/v1/metrics")).status_code for _ in range(3)]
        assert codes == [401, 401, 429]


async def test_a_bad_record_in_the_key_store_is_counted_and_skipped(federation) -> None:
    store = federation.runtime("eu-central-1").store
    await store.kv.put("key.zzzzzzzzzzzz", b"{not json")
    await store.kv.put("key.yyyyyyyyyyyy", json.dumps({"key_id": "yyyyyyyyyyyy"}).encode())
    await until(lambda: store.bad_records == 2, 2, "both bad records seen")
    status = await federation.daemons["eu-central-1"].status()
    assert status["partners"]["bad_records"] == 2
    async with federation.client("eu-central-1", role="read") as api:  # the watch goes on
        assert (await api.get("/v1/tenants")).status_code == 200
    async with federation.client(role="admin") as admin:
        new = (await admin.post("/v1/keys", json={"role": "read"})).json()
    await until(lambda: new["key_id"] in store.keys, 1, "a later key reaches eu-central-1")
