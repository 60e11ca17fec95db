"""The partner SDKs against real daemons with the partners plugin, on a real nats-server.

The Python SDK (Client and AsyncClient), the ``meshd-partner`` command (a
subprocess with its own HOME and XDG_CONFIG_HOME) and the JavaScript SDK (node,
told the daemon's URL and a key in its environment) each drive a tenant's
whole life. The daemons run in this test's event loop, so the blocking client
runs in a worker thread and the commands through anyio's subprocesses.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from meshd_partner import OPERATIONS, AsyncClient, Branding, Client, PartnerAPIError, PartnerConnectionError, RetryPolicy
from meshd_partner.core import Core

from meshd.testing import running_daemons, until

from .conftest import OTHER_PLUGINS, PLANS, RUNNING, Federation, partner_configs

pytestmark = [pytest.mark.anyio, pytest.mark.nats]

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "sdk" / "js"
CLI = Path(sys.executable).parent / "meshd-partner"


def sdk(federation: Federation, partner: str = "acme", role: str = "admin", **kwargs: Any) -> AsyncClient:
    return AsyncClient(federation.keys[(partner, role)], partner, federation.url("eu-west-1"), **kwargs)


def node() -> str:
    found = shutil.which("node")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("node is not installed: the JavaScript SDK cannot be tested (.ci/run installs nodejs)")
        pytest.skip("node is not installed")
    return found


async def test_python_sdk_drives_a_tenant_through_its_life(federation: Federation) -> None:
    async with sdk(federation) as api:
        tenant = await api.deploy_tenant(name="Bistro", region="eu-west-1", plan="starter",
                                         branding=Branding("#1A2B3C", "Bistro SARL"))
        assert (tenant.partner, tenant.plan, tenant.residency, tenant.home, tenant.status) == (
            "acme", "starter", "EU", "eu-west-1", "active")
        assert tenant.branding == Branding("#1A2B3C", "Bistro SARL") and tenant.created is not None
        others = [await api.deploy_tenant(name=f"Bistro {i}", region="eu-central-1", plan="pro") for i in range(3)]

        # one tenant a page: the iterator has to follow next_cursor four times
        listed = [t.id async for t in api.list_tenants(page_size=1)]
        assert listed == sorted([tenant.id, *(o.id for o in others)])

        assert await api.get_tenant(tenant.id) == tenant
        changed = await api.change_plan(tenant.id, "pro", expected_revision=tenant.revision)
        assert changed.plan == "pro" and changed.revision > tenant.revision
        with pytest.raises(PartnerAPIError) as conflict:
            await api.change_plan(tenant.id, "starter", expected_revision=tenant.revision)
        assert (conflict.value.status, conflict.value.code) == (409, "conflict")

        branded = await api.set_branding(tenant.id, "#ffffff", "New name")
        assert branded.branding == Branding("#FFFFFF", "New name")
        license = await api.issue_license(tenant.id, "pro", ["sso"], expires_in_days=30)
        assert license.token.count(".") == 2 and license.expires_at.year >= 2026

        suspended = await api.suspend_tenant(tenant.id)
        assert suspended.status == "suspended"
        assert [t.id async for t in api.list_tenants(status="suspended")] == [tenant.id]
        metrics = await api.get_metrics()
        assert metrics.tenants.by_status.get("suspended") == 1 and metrics.tenants.by_region.get("eu-central-1") == 3
        assert metrics.mrr is None and "mrr" in metrics.reasons  # no billing here: a reason, never a figure

        deleted = await api.delete_tenant(tenant.id)
        assert deleted is not None and deleted.status == "deleted"
        with pytest.raises(PartnerAPIError) as gone:
            await api.get_tenant(tenant.id)
        assert (gone.value.status, gone.value.code) == (404, "not_found")

        with pytest.raises(PartnerAPIError) as bad:
            await api.deploy_tenant(name="Nowhere", region="mars-1", plan="pro")
        assert (bad.value.status, bad.value.code, bad.value.field) == (422, "unknown_region", "region")

    # another partner's key does not even see the tenant exists
    async with sdk(federation, partner="globex") as theirs:
        with pytest.raises(PartnerAPIError) as hidden:
            await theirs.get_tenant(others[0].id)
        assert hidden.value.status == 404
        assert [t.id async for t in theirs.list_tenants()] == []


async def test_a_resent_create_returns_the_first_tenant_not_a_second(federation: Federation) -> None:
    async with sdk(federation) as api:
        call = Core.deploy_tenant("Once", "eu-west-1", "starter")  # one Idempotency-Key, as a retry resends it
        first = await api.send(call)
        again = await api.send(call)
        assert again.id == first.id
        assert [t.name async for t in api.list_tenants()] == ["Once"]


async def test_the_blocking_client_works_against_a_daemon(federation: Federation) -> None:
    key = federation.keys[("acme", "deployer")]

    def blocking() -> tuple[str, str, list[str]]:
        with Client(key, "acme", federation.url("eu-central-1")) as api:
            tenant = api.deploy_tenant(name="Sync", region="eu-central-1", plan="pro")
            return tenant.id, api.get_tenant(tenant.id).home or "", [t.id for t in api.list_tenants()]

    tenant_id, home, listed = await anyio.to_thread.run_sync(blocking)
    assert home == "eu-central-1" and listed == [tenant_id]


async def test_the_read_role_is_refused_writes_through_the_sdk(federation: Federation) -> None:
    async with sdk(federation, role="read") as api:
        with pytest.raises(PartnerAPIError) as refused:
            await api.deploy_tenant(name="No", region="eu-west-1", plan="pro")
        assert (refused.value.status, refused.value.code) == (403, "forbidden")
        metrics = await api.get_metrics()  # reading is what the read role may do
        assert metrics.tenants.by_status == {}


async def cli(home: Path, *argv: str, lang: str = "C.UTF-8") -> tuple[int, str, str]:
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"), "LANG": lang}
    env.pop("LC_ALL", None)
    env.pop("LC_MESSAGES", None)
    done = await anyio.run_process([str(CLI), *argv], env=env, check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_the_meshd_partner_command_against_a_daemon(federation: Federation, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    code, _, _ = await cli(home, "auth", federation.keys[("acme", "deployer")], "acme", "--url", federation.url("eu-west-1"))
    assert code == 0
    creds = home / "config" / "meshd-partner" / "credentials.json"
    assert creds.stat().st_mode & 0o777 == 0o600

    code, out, err = await cli(home, "deploy", "Bistro", "eu-west-1", "starter", "--colour", "#102030", "--json")
    assert code == 0, err
    tenant = json.loads(out)
    assert tenant["home"] == "eu-west-1" and tenant["branding"]["company_name"] == "Bistro"

    code, out, _ = await cli(home, "tenants", "--json")
    assert code == 0 and [t["id"] for t in json.loads(out)] == [tenant["id"]]
    code, out, _ = await cli(home, "branding", tenant["id"], "#AABBCC", "Bistro SA")
    assert code == 0 and tenant["id"] in out
    code, out, _ = await cli(home, "license", tenant["id"], "pro", "--feature", "sso")
    assert code == 0 and out.strip().splitlines()[-1].count(".") == 2
    code, out, _ = await cli(home, "metrics", "--json")
    assert code == 0 and json.loads(out)["tenants"]["by_status"] == {"active": 1}
    code, out, _ = await cli(home, "tenants", "--status", "suspended")
    assert code == 0 and out.strip() == "No tenants."

    code, out, _ = await cli(home, "show", tenant["id"], "--json")
    shown = json.loads(out)
    assert code == 0 and shown["branding"]["company_name"] == "Bistro SA"
    code, out, _ = await cli(home, "plan", tenant["id"], "pro", "--revision", str(shown["revision"]), "--json")
    assert code == 0 and json.loads(out)["plan"] == "pro"
    code, _, err = await cli(home, "plan", tenant["id"], "starter", "--revision", str(shown["revision"]))
    assert code == 1 and "409" in err  # that revision is gone: a conflict, nothing changed
    code, out, _ = await cli(home, "suspend", tenant["id"])
    assert code == 0 and "suspended" in out
    code, out, _ = await cli(home, "tenants", "--status", "suspended", "--json")
    assert [t["id"] for t in json.loads(out)] == [tenant["id"]]
    code, out, _ = await cli(home, "delete", tenant["id"], "--yes", "--json")
    assert code == 0 and json.loads(out)["status"] == "deleted"
    code, _, err = await cli(home, "show", tenant["id"])
    assert code == 1 and "404" in err

    # the server's problem title, asked for in the command's language; bad input exits 2
    code, _, err = await cli(home, "deploy", "Nowhere", "mars-1", "pro", lang="fr_FR.UTF-8")
    assert code == 2 and "Région inconnue" in err and "l'API partenaire a répondu 422" in err
    # a refusal that is not about the input exits 1
    code, _, err = await cli(home, "branding", "t_aaaaaaaaaaaaaaaa", "#000000", "X", lang="es_ES.UTF-8")
    assert code == 1 and "404" in err and "la API de socios" in err


async def test_the_javascript_sdk_against_a_daemon(federation: Federation) -> None:
    env = {**os.environ, "MESHD_PARTNER_URL": federation.url("eu-west-1"), "MESHD_PARTNER_ID": "acme",
           "MESHD_PARTNER_KEY": federation.keys[("acme", "deployer")], "MESHD_PARTNER_REGION": "eu-west-1",
           "MESHD_PARTNER_PLANS": ",".join(PLANS), "NO_COLOR": "1"}
    done = await anyio.run_process([node(), "--test", "test/daemon.test.js"], cwd=JS, env=env, check=False)
    report = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0, report[-4000:]
    counts = {name: int(n) for name, n in re.findall(r"^# (pass|fail|skipped) (\d+)$", report, re.M)}
    assert counts == {"pass": 3, "fail": 0, "skipped": 0}, report[-3000:]
    # what node made is in the registry both regions read
    async with sdk(federation, role="read") as api:
        assert {t.name async for t in api.list_tenants(status="deleted")} == {"Bistro JS", "JS two", "JS three"}


JS_OPERATIONS = """
import { MeshPartner, OPERATIONS } from './src/index.js';
const methods = Object.fromEntries(Object.entries(OPERATIONS)
  .map(([op, name]) => [op, typeof MeshPartner.prototype[name] === 'function' ? name : null]));
console.log(JSON.stringify(methods));
"""


async def test_every_openapi_operation_has_a_method_in_both_sdks(federation: Federation) -> None:
    async with httpx.AsyncClient(base_url=federation.url("eu-west-1")) as raw:
        doc = (await raw.get("/v1/openapi.json")).json()
    operations = {op["operationId"]: f"{method.upper()} {path}"
                  for path, ops in doc["paths"].items() for method, op in ops.items()}
    assert len(operations) >= 9

    python = {op: name for op, name in OPERATIONS.items()
              if callable(getattr(Client, name, None)) and callable(getattr(AsyncClient, name, None))}
    done = await anyio.run_process([node(), "--input-type=module", "-e", JS_OPERATIONS], cwd=JS, check=False)
    assert done.returncode == 0, done.stderr.decode()
    javascript = {op: name for op, name in json.loads(done.stdout).items() if name}

    missing = {f"{route} ({op})": [lang for lang, table in (("python", python), ("javascript", javascript))
                                   if op not in table]
               for op, route in operations.items()}
    assert {route: langs for route, langs in missing.items() if langs} == {}, "operations without an SDK method"
    # and neither SDK calls an operation the API no longer has
    assert set(OPERATIONS) - set(operations) == set() and set(javascript) - set(operations) == set()


@pytest.fixture
async def throttled(tmp_path: Path, nats_server: Any) -> AsyncIterator[Federation]:
    """One partner key on daemons that allow 2 requests a second (burst 2)."""
    configs = partner_configs(tmp_path, nats_server.url, {"partners": {"enabled": True, "port": 0, "plans": PLANS,
                                                                       "rate_limit": {"per_second": 2, "burst": 2}}})
    async with running_daemons({r: configs[r] for r in RUNNING[:1]}, blocked=OTHER_PLUGINS) as daemons:
        fed = Federation(daemons, configs)
        store = fed.runtime("eu-west-1").store
        await store.add_partner("Acme", "acme")
        _, fed.keys[("acme", "admin")] = await store.create_key("acme", "admin")
        await until(lambda: len(fed.runtime("eu-west-1").store.keys) == 1, 10, "the key is watched")
        yield fed


async def test_the_sdk_rides_out_the_rate_limit_by_honouring_retry_after(throttled: Federation) -> None:
    seen: list[int] = []

    async def record(response: httpx.Response) -> None:
        seen.append(response.status_code)

    async with sdk(throttled, retry=RetryPolicy(attempts=6, base_delay=0.05)) as api:
        api._http.event_hooks["response"].append(record)
        results = [await api.get_metrics() for _ in range(6)]
    assert len(results) == 6 and all(r.tenants.by_status == {} for r in results)
    assert 429 in seen, "the daemon never throttled: the test proves nothing"
    assert seen.count(200) == 6


JS_LIST = """
import { MeshPartner } from './src/index.js';
const api = new MeshPartner({ apiKey: process.env.MESHD_PARTNER_KEY, partnerId: 'acme', baseUrl: process.env.MESHD_PARTNER_URL,
                              retry: { attempts: 1 } });
const names = [];
for await (const t of api.listTenants()) names.push(t.name);
console.log(JSON.stringify(names));
"""


async def test_all_three_clients_over_tls_with_a_private_ca(tmp_path: Path, nats_server: Any) -> None:
    from .test_partner_cli import _self_signed

    cert, key = _self_signed(tmp_path)
    configs = partner_configs(tmp_path, nats_server.url, {"partners": {
        "enabled": True, "port": 0, "plans": PLANS, "tls": {"cert_file": str(cert), "key_file": str(key)}}})
    async with running_daemons({"eu-west-1": configs["eu-west-1"]}, blocked=OTHER_PLUGINS) as daemons:
        fed = Federation(daemons, configs)
        rt = fed.runtime("eu-west-1")
        await rt.store.add_partner("Acme", "acme")
        _, secret = await rt.store.create_key("acme", "deployer")
        url = f"https://127.0.0.1:{rt.port}"

        async with AsyncClient(secret, "acme", url, ca_file=str(cert)) as api:
            await api.deploy_tenant(name="Over TLS", region="eu-west-1", plan="pro")
        # the same certificate without its CA: refused, and said so
        async with AsyncClient(secret, "acme", url, retry=RetryPolicy(attempts=1)) as untrusting:
            with pytest.raises(PartnerConnectionError, match="unreachable"):
                await untrusting.get_metrics()

        home = tmp_path / "home"
        home.mkdir()
        assert (await cli(home, "auth", secret, "acme", "--url", url, "--ca", str(cert)))[0] == 0
        code, out, err = await cli(home, "tenants", "--json")
        assert code == 0, err
        assert [t["name"] for t in json.loads(out)] == ["Over TLS"]

        env = {**os.environ, "MESHD_PARTNER_URL": url, "MESHD_PARTNER_KEY": secret, "NODE_EXTRA_CA_CERTS": str(cert)}
        done = await anyio.run_process([node(), "--input-type=module", "-e", JS_LIST], cwd=JS, env=env, check=False)
        assert done.returncode == 0, done.stderr.decode()
        assert json.loads(done.stdout) == ["Over TLS"]
