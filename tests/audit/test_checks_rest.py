"""rest.*: the metering ledger, secrets in the config and the key-encryption key, at rest."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from meshd.natsserver import NatsServer
from meshd.plugins import Hooks
from meshd.testing import until, write_federation
from meshd_plugins.keys.configsecrets import encrypt_config_value

from .conftest import daemons, run_check, without_secrets

pytestmark = pytest.mark.anyio
ONLY_KEYS = ("health", "membership", "failover", "routing", "alerts", "metering", "billing", "fencing", "partners")
TENANTS = "tenants:\n  acme-eu: {residency: EU, home: eu-west-1}\n"
METERING = {"meters": {"api_calls": {"kind": "SUM", "unit": "requests"}}}


def metering_patch(tmp_path: Path) -> dict[str, object]:
    (tmp_path / "tenants.yaml").write_text(TENANTS)
    return {"tenants": str(tmp_path / "tenants.yaml"), "metering": METERING}


@pytest.mark.parametrize(("blocked", "status"), [
    (("health", "membership", "failover", "routing", "alerts", "billing", "fencing", "partners"), "pass"),
    (("health", "membership", "failover", "routing", "alerts", "billing", "fencing", "partners", "keys"), "fail"),
])
async def test_ledger_encrypted_with_the_keyring_or_not(tmp_path: Path, nats_server: NatsServer,
                                                         blocked: tuple[str, ...], status: str) -> None:
    async with daemons(tmp_path, nats_server.url, patch=metering_patch(tmp_path), blocked=blocked) as running:
        daemon = running["eu-west-1"]
        runtime = daemon.hooks.pm.get_plugin("metering").runtime
        await until(lambda: runtime.ledger is not None, what="the ledger to open")
        result = await run_check("rest.ledger_encrypted", daemon)
    assert result.status == status, result.detail
    if status == "fail":
        assert "stored in plaintext" in result.detail and "ledger.sqlite3" in result.detail
        assert result.evidence["at_rest"] == "plaintext"
    else:
        assert result.evidence["at_rest"] == "keyring"


async def test_ledger_check_reads_every_shard_and_names_a_plaintext_one(tmp_path: Path, nats_server: NatsServer) -> None:
    patch = metering_patch(tmp_path)
    patch["metering"] = {**METERING, "partitions": 3}
    blocked = ("health", "membership", "failover", "routing", "alerts", "billing", "fencing", "partners")
    async with daemons(tmp_path, nats_server.url, patch=patch, blocked=blocked) as running:
        daemon = running["eu-west-1"]
        runtime = daemon.hooks.pm.get_plugin("metering").runtime
        await until(lambda: len(runtime.ledgers) == 3, what="the shards to open")
        result = await run_check("rest.ledger_encrypted", daemon)
        assert result.status == "pass", result.detail
        assert "3 shards" in result.detail
        assert sorted(Path(p).name for p in result.evidence["shards"]) == [
            f"ledger.p{k}of3.sqlite3" for k in range(3)]
        # A shard whose file says plaintext (as a worker without the keyring would have written it).
        third = runtime.ledgers[2]
        third._set_meta({"at_rest": "plaintext"})
        result = await run_check("rest.ledger_encrypted", daemon)
    assert result.status == "fail" and "ledger.p2of3.sqlite3" in result.detail, result.detail


async def test_ledger_check_is_not_applicable_without_metering(tmp_path: Path, nats_server: NatsServer) -> None:
    async with daemons(tmp_path, nats_server.url, blocked=ONLY_KEYS) as running:
        result = await run_check("rest.ledger_encrypted", running["eu-west-1"])
    assert result.status == "not_applicable" and "metering" in result.detail


def encrypted_password_config(tmp_path: Path, nats_url: str, password: str) -> dict[str, Path]:
    """A federation whose eu-west-1 reads its NATS password `!encrypted`, with the password files removed."""
    configs = write_federation(tmp_path, ["eu-west-1"], nats_url)
    for leftover in (tmp_path / "federation" / "secrets").glob("*.nats-password"):
        leftover.unlink()
    path = configs["eu-west-1"]
    hooks = Hooks.load(blocked=ONLY_KEYS)
    config = hooks.load_config(path)
    ring = hooks.pm.get_plugin("keys").manager_for(config, hooks, short_lived=True).keyring("secrets")
    data = yaml.safe_load(path.read_text())
    data["nats"]["password"] = "PLACEHOLDER"
    path.write_text(yaml.safe_dump(data).replace("PLACEHOLDER", encrypt_config_value(ring, password)))
    return configs


async def test_config_secrets_encrypted_and_no_password_file_left(tmp_path: Path, nats_server: NatsServer) -> None:
    password = "correct-horse-battery-staple"
    configs = encrypted_password_config(tmp_path, nats_server.url, password)
    from meshd.testing import running_daemons

    async with running_daemons(configs, blocked=ONLY_KEYS) as running:
        daemon = running["eu-west-1"]
        result = await run_check("rest.config_secrets_encrypted", daemon)
        assert result.status == "pass", result.detail
        assert result.evidence["secret_settings"] == {"nats.password": "encrypted"}
        assert without_secrets(result, password)

        # A password file left behind after the move to !encrypted.
        leftover = tmp_path / "federation" / "secrets" / "eu-west-1.nats-password"
        leftover.write_text(password + "\n")
        result = await run_check("rest.config_secrets_encrypted", daemon)
    assert result.status == "fail"
    assert f"plaintext password file left: {leftover}" in result.detail
    assert without_secrets(result, password)


async def test_plaintext_secret_and_password_file_fail(tmp_path: Path, nats_server: NatsServer) -> None:
    password = "plain-text-password-123"
    async with daemons(tmp_path, nats_server.url, regions=["eu-west-1"], blocked=ONLY_KEYS,
                       patch={"nats": {"user": "eu-west-1", "password": password}}) as running:
        result = await run_check("rest.config_secrets_encrypted", running["eu-west-1"])
    assert result.status == "fail"
    assert "plaintext secret in nats.password" in result.detail
    assert "plaintext password file left" in result.detail  # the ones `meshd init` wrote
    assert without_secrets(result, password)


async def test_kek_file_mode(tmp_path: Path, nats_server: NatsServer) -> None:
    async with daemons(tmp_path, nats_server.url, blocked=ONLY_KEYS) as running:
        daemon = running["eu-west-1"]
        kek = Path(daemon.state_dir) / "keys" / "kek"
        kek_text = kek.read_text().strip()
        result = await run_check("rest.kek_protected", daemon)
        assert result.status == "pass", result.detail
        kek.chmod(0o640)
        result = await run_check("rest.kek_protected", daemon)
        kek.chmod(0o600)
    assert result.status == "fail" and f"{kek} has mode 0640" in result.detail
    assert without_secrets(result, kek_text)


async def test_kek_check_is_not_applicable_without_keys(tmp_path: Path, nats_server: NatsServer) -> None:
    async with daemons(tmp_path, nats_server.url, blocked=(*ONLY_KEYS, "keys")) as running:
        result = await run_check("rest.kek_protected", running["eu-west-1"])
    assert result.status == "not_applicable"


async def test_a_password_in_a_nats_url_is_a_plaintext_secret(tmp_path: Path, nats_server: NatsServer) -> None:
    password = "url-password-456"
    url = nats_server.url.replace("nats://", f"nats://eu-west-1:{password}@")
    async with daemons(tmp_path, nats_server.url, regions=["eu-west-1"], blocked=ONLY_KEYS,
                       patch={"nats": {"servers": [url]}}) as running:
        result = await run_check("rest.config_secrets_encrypted", running["eu-west-1"])
    assert result.status == "fail" and "plaintext secret in nats.servers.0" in result.detail
    assert without_secrets(result, password)


async def test_a_plaintext_receiver_secret_is_named(tmp_path: Path, nats_server: NatsServer) -> None:
    token = "Hook-Token-789"
    blocked = tuple(b for b in ONLY_KEYS if b != "alerts")
    async with daemons(tmp_path, nats_server.url, regions=["eu-west-1"], blocked=blocked,
                       patch={"alerts": {"secrets": {"pager": f"json://bot:{token}@127.0.0.1:9/hook"}}}) as running:
        result = await run_check("rest.config_secrets_encrypted", running["eu-west-1"])
    assert result.status == "fail" and "alerts.secrets.pager" in result.detail
    assert result.evidence["secret_settings"]["alerts.secrets.pager"] == "plaintext"
    assert without_secrets(result, token)
