"""Idempotent creates, licenses that verify offline, the audit log of every write, and the OpenAPI document."""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
import jwt
import pytest

from meshd.cli import main
from meshd_plugins.failover.audit import verify
from meshd_plugins.partners.licenses import LicenseInvalid
from meshd_plugins.partners.licenses import verify as verify_license

pytestmark = [pytest.mark.anyio, pytest.mark.nats]

GOOD = {"name": "Shop", "region": "eu-west-1", "plan": "starter"}


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``meshd ARGV`` in a worker thread (the daemons answer it from this event loop)."""
    capsys.readouterr()
    code = await anyio.to_thread.run_sync(main, ["--lang", "en", *argv])
    out, err = capsys.readouterr()
    return code, out, err


async def test_a_retried_create_returns_the_first_tenant(federation) -> None:
    async with federation.client(role="deployer") as api:
        first = await api.post("/v1/tenants", json=GOOD, headers={"Idempotency-Key": "order-42"})
        assert first.status_code == 201
        again = await api.post("/v1/tenants", json=GOOD, headers={"Idempotency-Key": "order-42"})
        assert again.status_code == 201 and again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
    # in the other region too, and concurrent retries never make a second tenant
    async with federation.client("eu-central-1", role="deployer") as api:
        answers = []

        async def post() -> None:
            answers.append(await api.post("/v1/tenants", json=GOOD, headers={"Idempotency-Key": "order-42"}))
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(post)
        assert {a.json()["id"] for a in answers} == {first.json()["id"]}
        r = await api.post("/v1/tenants", json={**GOOD, "name": "Other"}, headers={"Idempotency-Key": "order-42"})
        assert r.status_code == 409 and r.json()["type"].endswith("/idempotency_conflict")
        # concurrent first requests with one new key: exactly one tenant
        fresh = []

        async def post_new() -> None:
            fresh.append(await api.post("/v1/tenants", json=GOOD, headers={"Idempotency-Key": "order-43"}))
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(post_new)
        made = {a.json()["id"] for a in fresh if a.status_code == 201}
        assert len(made) == 1, [a.text for a in fresh]
        assert all(a.status_code in (201, 409) for a in fresh)
    async with federation.client(role="read") as api:
        assert len((await api.get("/v1/tenants")).json()["items"]) == 2
    # another partner's identical key is its own
    async with federation.client(partner="globex") as api:
        r = await api.post("/v1/tenants", json=GOOD, headers={"Idempotency-Key": "order-42"})
        assert r.status_code == 201 and r.json()["id"] != first.json()["id"]


async def test_licenses_verify_offline_and_forgeries_do_not(federation, tmp_path: Path, capsys) -> None:
    async with federation.client() as api:
        tid = (await api.post("/v1/tenants", json=GOOD)).json()["id"]
        r = await api.post("/v1/licenses", json={"tenant": tid, "plan": "pro", "features": ["sso", "audit"],
                                                 "expires_in_days": 30})
        assert r.status_code == 201, r.text
        token, expires_at = r.json()["token"], r.json()["expires_at"]
        assert expires_at.endswith("Z")
        problem = (await api.post("/v1/licenses", json={"tenant": tid, "plan": "gold"})).json()
        assert problem["type"].endswith("/unknown_plan")
    config = federation.daemons["eu-west-1"].config
    claims = verify_license(token, trust=config.trust)
    assert (claims["tenant"], claims["partner"], claims["plan"], claims["features"], claims["iss"]) == (
        tid, "acme", "pro", ["audit", "sso"], "test")
    assert 29 * 86400 < claims["exp"] - time.time() <= 30 * 86400

    code, out, err = await cli(capsys, "license", "verify", token, "--config", str(federation.configs["eu-west-1"]))
    assert code == 0 and tid in out, err
    # with only the issuing region's public key, as a partner would
    key_file = tmp_path / "eu-west-1.pub"
    key_file.write_text(config.trust.keys["eu-west-1"].public_key + "\n")
    code, out, _ = await cli(capsys, "license", "verify", token, "--key", str(key_file), "--json")
    assert code == 0 and json.loads(out)["claims"]["tenant"] == tid

    header, payload, signature = token.split(".")
    forged_claims = {**claims, "plan": "enterprise"}
    forged_payload = jwt.utils.base64url_encode(json.dumps(forged_claims).encode()).decode()
    forged = f"{header}.{forged_payload}.{signature}"
    with pytest.raises(LicenseInvalid, match="signature"):
        verify_license(forged, trust=config.trust)
    code, _, err = await cli(capsys, "license", "verify", forged, "--config", str(federation.configs["eu-west-1"]))
    assert code == 1 and "not valid" in err
    # signed by another region's key but claiming this one's
    other_key = federation.daemons["eu-central-1"].config.daemon.identity.private_key
    from meshd.identity import load_private_key
    from meshd_plugins.partners import licenses

    wrong, _ = licenses.issue(load_private_key(other_key), federation="test", region="eu-central-1", tenant=tid,
                              partner="acme", plan="pro", features=[], ttl=60)
    assert verify_license(wrong, trust=config.trust)["region"] == "eu-central-1"  # genuinely from eu-central-1
    with pytest.raises(LicenseInvalid):
        verify_license(wrong, key=licenses.read_public_key(key_file))  # not eu-west-1's key
    expired, _ = licenses.issue(load_private_key(config.daemon.identity.private_key), federation="test",
                                region="eu-west-1", tenant=tid, partner="acme", plan="pro", features=[], ttl=10,
                                now=time.time() - 3600)
    with pytest.raises(LicenseInvalid, match="expired"):
        verify_license(expired, trust=config.trust)
    code, _, err = await cli(capsys, "license", "verify", expired, "--key", str(key_file))
    assert code == 1 and "expired" in err
    code, _, err = await cli(capsys, "license", "verify", "not.a.jwt", "--key", str(key_file))
    assert code == 1


async def test_every_write_is_in_the_audit_log_and_a_tampered_entry_is_named(federation, capsys) -> None:
    async with federation.client() as api:
        tid = (await api.post("/v1/tenants", json=GOOD)).json()["id"]
        await api.patch(f"/v1/tenants/{tid}", json={"plan": "pro"})
        await api.put(f"/v1/tenants/{tid}/branding", json={"primary_color": "#000000", "company_name": "B"})
        await api.post(f"/v1/tenants/{tid}/suspend")
        await api.post("/v1/licenses", json={"tenant": tid, "plan": "pro"})
        await api.delete(f"/v1/tenants/{tid}")
        await api.get(f"/v1/tenants/{tid}")  # reads are not audited
    path = Path(federation.daemons["eu-west-1"].state_dir) / "partners" / "audit.log"
    trust = federation.runtime("eu-west-1").daemon.config.trust
    from meshd.identity import TrustStore

    result = verify(path, trust=TrustStore(trust), region="eu-west-1")
    assert result.ok, result.problem
    writes = [e for e in result.entries if e.kind.startswith(("tenant.", "license."))]
    assert [e.kind for e in writes] == ["tenant.create", "tenant.plan", "tenant.branding", "tenant.suspend",
                                        "license.issue", "tenant.delete"]
    key_id = federation.keys[("acme", "admin")].split("_")[1]
    assert all(e.data["partner"] == "acme" and e.data["key_id"] == key_id and e.data["address"] == "127.0.0.1"
               and e.data["tenant"] == tid for e in writes)
    code, out, _ = await cli(capsys, "partners", "audit", "--config", str(federation.configs["eu-west-1"]))
    assert code == 0, out

    lines = path.read_text().splitlines()
    target = next(i for i, line in enumerate(lines) if '"tenant.plan"' in line)
    entry = json.loads(lines[target])
    entry["data"]["changes"]["plan"] = "starter"
    lines[target] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n")
    result = verify(path, trust=TrustStore(trust), region="eu-west-1")
    assert result.problem is not None and result.problem.code == "edited" and result.problem.seq == entry["seq"]
    code, _, err = await cli(capsys, "partners", "audit", "--config", str(federation.configs["eu-west-1"]))
    assert code == 2 and str(entry["seq"]) in err


async def test_openapi_lists_every_route(federation) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=federation.url("eu-west-1")) as raw:
        r = await raw.get("/v1/openapi.json")  # no key needed: the SDKs read it
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    api = federation.runtime("eu-west-1").api
    served = {(method, path) for method, path, _, _ in api.routes}
    assert documented == served
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    for ops in doc["paths"].values():
        for op in ops.values():
            assert any(code.startswith("2") for code in op["responses"]), op["operationId"]
            assert "401" in op["responses"] and "429" in op["responses"]
            for response in op["responses"].values():
                for content in response.get("content", {}).values():
                    ref = content["schema"]["$ref"].rsplit("/", 1)[1]
                    assert ref in doc["components"]["schemas"]
            if "requestBody" in op:
                ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
                assert ref in doc["components"]["schemas"]
