"""access.*: the NATS server's permissions tried for real, the admin token, partner API keys."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from meshd.natsserver import NatsServer, authorization_block
from meshd.testing import until

from .conftest import REGIONS, daemons, run_check, without_secrets

pytestmark = pytest.mark.anyio
BLOCK = ("health", "membership", "failover", "routing", "alerts", "metering", "billing", "fencing", "partners")


def passwords() -> dict[str, str]:
    return {r: secrets.token_urlsafe(16) for r in REGIONS}


def auth_server(tmp_path: Path, binary: str, users: dict[str, str], **extra: object) -> NatsServer:
    return NatsServer(tmp_path / "nats-auth", binary=binary,
                      authorization=authorization_block("test", users, **extra)).start()  # type: ignore[arg-type]


def as_region(url: str, region: str, password: str) -> dict[str, object]:
    return {"nats": {"servers": [url], "user": region, "password": password}}


async def test_the_server_refuses_a_region_speaking_as_another(tmp_path: Path, nats_binary: str) -> None:
    users = passwords()
    server = auth_server(tmp_path, nats_binary, users)
    try:
        async with daemons(tmp_path, server.url, patch=as_region(server.url, "eu-west-1", users["eu-west-1"]),
                           blocked=BLOCK) as running:
            result = await run_check("access.region_impersonation", running["eu-west-1"])
            broad = await run_check("access.nats_broad_publish", running["eu-west-1"])
    finally:
        server.stop()
    assert result.status == "pass", result.detail
    assert result.evidence["as_other_region"] == {"subject": "meshd.test.audit-probe.eu-central-1", "refused": True}
    assert broad.status == "pass", broad.detail
    assert without_secrets(result, *users.values()) and without_secrets(broad, *users.values())


async def test_without_permissions_a_region_can_speak_as_another(tmp_path: Path, nats_server: NatsServer) -> None:
    async with daemons(tmp_path, nats_server.url, blocked=BLOCK) as running:
        result = await run_check("access.region_impersonation", running["eu-west-1"])
        broad = await run_check("access.nats_broad_publish", running["eu-west-1"])
    assert result.status == "fail"
    assert "accepted a publish on meshd.test.audit-probe.eu-central-1" in result.detail
    assert "can speak as eu-central-1" in result.detail
    assert broad.status == "fail" and "may publish anywhere" in broad.detail


async def test_a_broad_user_in_the_server_config_fails(tmp_path: Path, nats_binary: str) -> None:
    users = passwords()
    ops_password = secrets.token_urlsafe(16)
    server = auth_server(tmp_path, nats_binary, users, extra_users={"ops": (ops_password, {"publish": ">"})})
    try:
        async with daemons(tmp_path, server.url, patch=as_region(server.url, "eu-west-1", users["eu-west-1"]),
                           blocked=BLOCK) as running:
            daemon = running["eu-west-1"]
            # The federation's server config beside the region's config, as `meshd init` writes it.
            (Path(daemon.config.path).parent / "nats-server.conf").write_text(server.conf_path.read_text())
            result = await run_check("access.nats_broad_publish", daemon)
    finally:
        server.stop()
    assert result.status == "fail"
    assert "publish '>'" in result.detail and "ops" in result.detail
    assert result.evidence["probe"]["refused"] is True
    assert without_secrets(result, ops_password, *users.values())


async def test_admin_token_mode(tmp_path: Path, nats_server: NatsServer) -> None:
    async with daemons(tmp_path, nats_server.url, blocked=BLOCK) as running:
        daemon = running["eu-west-1"]
        token_path = Path(daemon.state_dir) / "admin.token"
        token = token_path.read_text().strip()
        result = await run_check("access.admin_token_mode", daemon)
        assert result.status == "pass", result.detail
        token_path.chmod(0o644)
        result = await run_check("access.admin_token_mode", daemon)
    assert result.status == "fail" and "mode 0644" in result.detail and "admin.token" in result.detail
    assert without_secrets(result, token)


async def test_partner_api_keys_are_stored_hashed(tmp_path: Path, nats_server: NatsServer) -> None:
    blocked = tuple(b for b in BLOCK if b != "partners")
    patch = {"partners": {"enabled": True, "port": 0}, "tenants": {"registry": "kv"}}
    async with daemons(tmp_path, nats_server.url, blocked=blocked, patch=patch) as running:
        daemon = running["eu-west-1"]
        runtime = daemon.hooks.pm.get_plugin("partners").runtime
        await until(lambda: runtime.state == "serving", what="the partner API to serve")
        partner = await runtime.store.add_partner("Acme Resellers")
        record, secret = await runtime.store.create_key(partner.id, "read")
        result = await run_check("access.api_keys_hashed", daemon)
        assert result.status == "pass", result.detail
        assert result.evidence["keys"][0]["hash_scheme"] == "argon2id"
        assert without_secrets(result, secret, record.hash)

        # The partner API keeps its own hash-chained audit log, verified beside failover's.
        chains = await run_check("logging.audit_chains", daemon)
        assert chains.status == "pass", chains.detail
        assert chains.evidence["chains"]["partners"]["path"].endswith("partners/audit.log")

        # A record written by something that stored the secret itself.
        leaked = "mk_plain_secret_value"
        await runtime.store.kv.put("key.k0000000000000001", json.dumps(
            {"key_id": "k0000000000000001", "partner": partner.id, "role": "read", "hash": leaked,
             "created": 1.0, "revoked": None}).encode())
        await until(lambda: "k0000000000000001" in runtime.store.keys, what="the store to see the record")
        result = await run_check("access.api_keys_hashed", daemon)
    assert result.status == "fail"
    assert "not stored as argon2id hashes: k0000000000000001" in result.detail
    assert without_secrets(result, leaked, secret)


async def test_api_keys_check_is_not_applicable_without_partners(tmp_path: Path, nats_server: NatsServer) -> None:
    async with daemons(tmp_path, nats_server.url, blocked=BLOCK) as running:
        result = await run_check("access.api_keys_hashed", running["eu-west-1"])
    assert result.status == "not_applicable" and "partners" in result.detail


async def test_impersonation_is_refused_over_tls_too(tmp_path: Path, nats_binary: str) -> None:
    from meshd.natsserver import free_port, render_config
    from meshd.testcerts import make_certs

    users = passwords()
    certs = make_certs(tmp_path / "tls")
    port, monitor = free_port(), free_port()
    workdir = tmp_path / "nats-tls"
    workdir.mkdir()
    conf = workdir / "nats.conf"
    conf.write_text(render_config(name="tls-1", host="127.0.0.1", port=port, monitor_port=monitor,
                                  store_dir=workdir / "js", authorization=authorization_block("test", users))
                    + f'tls {{ cert_file: "{certs.cert}", key_file: "{certs.key}" }}\n')
    server = NatsServer(workdir, name="tls-1", port=port, monitor_port=monitor, config_file=conf,
                        binary=nats_binary).start()
    url = f"tls://127.0.0.1:{port}"
    patch = {"nats": {"servers": [url], "user": "eu-west-1", "password": users["eu-west-1"],
                      "tls": {"ca_file": str(certs.ca)}}}
    try:
        async with daemons(tmp_path, url, patch=patch, blocked=BLOCK) as running:
            result = await run_check("access.region_impersonation", running["eu-west-1"])
            broad = await run_check("access.nats_broad_publish", running["eu-west-1"])
    finally:
        server.stop()
    assert result.status == "pass", result.detail
    assert broad.status == "pass", broad.detail
    assert without_secrets(result, *users.values())
