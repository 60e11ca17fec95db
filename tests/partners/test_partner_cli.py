"""The operator's commands against real daemons, and the API over TLS."""

from __future__ import annotations

import datetime as dt
import json
import ssl
from pathlib import Path

import anyio
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshd.cli import main
from meshd.testing import running_daemons, until

from .conftest import OTHER_PLUGINS, Federation, partner_configs

pytestmark = [pytest.mark.anyio, pytest.mark.nats]


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await anyio.to_thread.run_sync(main, ["--lang", "en", *argv])
    out, err = capsys.readouterr()
    return code, out, err


async def test_operator_adds_a_partner_and_manages_its_keys(federation, capsys) -> None:
    west, central = (str(federation.configs[r]) for r in ("eu-west-1", "eu-central-1"))
    code, out, err = await cli(capsys, "partners", "add", "Initech Ltd", "--config", west)
    assert code == 0 and "initech-ltd" in out, err
    code, _, err = await cli(capsys, "partners", "add", "Initech Ltd", "--config", west)
    assert code == 2 and "exists" in err
    code, out, err = await cli(capsys, "partners", "key", "create", "initech-ltd", "--role", "deployer",
                               "--config", central, "--json")
    assert code == 0, err
    created = json.loads(out)
    key = created["key"]
    assert key.startswith("mpk_") and created["role"] == "deployer"
    code, _, err = await cli(capsys, "partners", "key", "create", "nobody", "--config", west)
    assert code == 2 and "nobody" in err

    code, out, _ = await cli(capsys, "partners", "key", "list", "initech-ltd", "--config", west)
    assert code == 0 and created["key_id"] in out and key not in out
    code, out, _ = await cli(capsys, "partners", "list", "--config", west, "--json")
    assert "initech-ltd" in [p["id"] for p in json.loads(out)["items"]]

    headers = {"Authorization": f"Bearer {key}", "Meshd-Partner": "initech-ltd"}
    async with httpx.AsyncClient(base_url=federation.url("eu-west-1"), headers=headers) as api:
        await until(lambda: federation.runtime("eu-west-1").store.keys.get(created["key_id"]), 5)
        r = await api.post("/v1/tenants", json={"name": "Initrode", "region": "eu-central-1", "plan": "pro"})
        assert r.status_code == 201, r.text
        code, out, err = await cli(capsys, "partners", "key", "revoke", "initech-ltd", created["key_id"],
                                   "--config", central)
        assert code == 0 and "revoked" in out, err

        async def refused() -> bool:
            return (await api.get("/v1/tenants")).status_code == 401
        await until(refused, 1.0, "the revoked key refused in eu-west-1")
    code, out, _ = await cli(capsys, "partners", "key", "list", "initech-ltd", "--config", west, "--json")
    assert json.loads(out)["items"][0]["revoked"] is not None
    # the stored record never holds the key itself
    store = federation.runtime("eu-west-1").store
    entry = await store.kv.get(f"key.{created['key_id']}")
    assert key.split("_", 2)[2] not in entry.value.decode() and "argon2id" in entry.value.decode()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "api.crt", tmp_path / "api.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


async def test_the_api_over_tls(tmp_path: Path, nats_server) -> None:
    cert, key = _self_signed(tmp_path)
    configs = partner_configs(tmp_path, nats_server.url, {"partners": {
        "enabled": True, "port": 0, "plans": ["pro"], "tls": {"cert_file": str(cert), "key_file": str(key)}}})
    async with running_daemons({"eu-west-1": configs["eu-west-1"]}, blocked=OTHER_PLUGINS) as daemons:
        fed = Federation(daemons, configs)
        rt = fed.runtime("eu-west-1")
        await rt.store.add_partner("Acme", "acme")
        _, secret = await rt.store.create_key("acme", "read")
        headers = {"Authorization": f"Bearer {secret}", "Meshd-Partner": "acme"}
        async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{rt.port}", verify=ssl.create_default_context(cafile=str(cert)),
                                     headers=headers) as api:
            r = await api.get("/v1/metrics")
            assert r.status_code == 200 and r.json()["tenants"]["total"] == 0
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{rt.port}") as plain:
            with pytest.raises(httpx.HTTPError):
                await plain.get("/v1/metrics", headers=headers)


def test_check_config_names_what_the_plugin_needs(tmp_path: Path, capsys) -> None:
    configs = partner_configs(tmp_path, "nats://127.0.0.1:4222", {
        "partners": {"enabled": True, "tls": {"cert_file": str(tmp_path / "none.crt"), "key_file": "none.key"}},
        "tenants": None})
    capsys.readouterr()
    assert main(["--lang", "en", "check-config", str(configs["eu-west-1"])]) == 2
    err = capsys.readouterr().err
    assert "partners.enabled" in err and "registry: kv" in err
    assert "partners.tls.cert_file" in err and "none.crt" in err
