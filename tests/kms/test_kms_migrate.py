"""On a live daemon and a real OpenBao: ``migrate-kek`` from the local KEK, ``rewrap --kek`` after a
Transit key rotation, and data keys dropped once Transit refuses them (``data_key_ttl``)."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from meshd.cli import main
from meshd.natsserver import NatsServer, free_port
from meshd.testing import BUILTIN_PLUGINS, running_daemons, until, write_federation
from meshd_plugins.keys.errors import KEKError

from ..keys.keyleaks import leaks
from .conftest import need

pytestmark = pytest.mark.anyio

OTHERS = [p for p in BUILTIN_PLUGINS if p != "keys"]
REGION = "eu-west-1"


async def meshd(*argv: str) -> int:
    """The CLI, in a thread: it talks to the in-process daemon over HTTP."""
    return await anyio.to_thread.run_sync(main, ["--lang", "en", *argv])


def keyring_files(config: Path) -> dict[str, dict[str, Any]]:
    keys_dir = config.parent / "state" / REGION / "keys"
    return {p.stem: json.loads(p.read_text()) for p in sorted(keys_dir.glob("*.json"))}


def edit(config: Path, change: Any) -> None:
    data = yaml.safe_load(config.read_text())
    change(data["keys"])
    config.write_text(yaml.safe_dump(data, sort_keys=False))


async def keys_open(daemon: Any) -> Any:
    keys = daemon.hooks.pm.get_plugin("keys")
    await until(lambda: keys.status_doc(daemon)["ok"], what="keyrings open")
    return keys


async def test_migrate_kek_from_local_to_openbao_on_a_live_daemon(
        tmp_path: Path, nats_server: NatsServer, openbao: Any, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    need("meshd_kms_vault_transit")
    caplog.set_level(logging.DEBUG)
    openbao.transit_key("meshd-migrate")
    transit = {"url": openbao.url, "key": "meshd-migrate", "token": openbao.token}
    configs = write_federation(tmp_path, [REGION], nats_server.url, patch={"http": {"port": free_port()}, "keys": {
        "check_interval": "0.2s", "purposes": ["secrets", "metering"]}})
    config = configs[REGION]
    kek_file = config.parent / "state" / REGION / "keys" / "kek"
    async with running_daemons(configs, blocked=OTHERS) as ds:
        daemon = ds[REGION]
        await keys_open(daemon)
        ring = daemon.hooks.keyring(daemon, "metering")
        stored = [ring.encrypt(f"usage {i}".encode(), {"tenant": "acme"}) for i in range(20)]
        assert {f["kek"]["provider"] for f in keyring_files(config).values()} == {"local"}

        assert await meshd("keys", "migrate-kek", "--to", "vault-transit", "--config", str(config)) == 2
        assert "there is no keys.migrate_to" in capsys.readouterr().err
        edit(config, lambda keys: keys.update(migrate_to={"provider": "vault-transit", "settings": transit}))
        assert await meshd("keys", "migrate-kek", "--to", "aws-kms", "--config", str(config)) == 2
        assert "does not match keys.migrate_to" in capsys.readouterr().err

        # Encryption and decryption go on while the keyrings move: no downtime.
        during: list[str] = []
        errors: list[BaseException] = []
        migrated = anyio.Event()

        async def traffic() -> None:
            while not migrated.is_set():
                try:
                    during.append(ring.encrypt(b"during", {"tenant": "acme"}))
                    assert ring.decrypt(stored[0], {"tenant": "acme"}) == b"usage 0"
                except Exception as exc:
                    errors.append(exc)
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            tg.start_soon(traffic)
            code = await meshd("keys", "migrate-kek", "--to", "vault-transit", "--config", str(config))
            migrated.set()
        out = capsys.readouterr()
        assert code == 0, out.err
        assert "2 keyring(s) of eu-west-1 are wrapped by vault-transit" in out.out
        assert not errors and during
        files = keyring_files(config)
        assert {f["kek"]["provider"] for f in files.values()} == {"vault-transit"}
        assert all(base64.b64decode(v["wrapped"]).startswith(b"vault:v1:")
                   for f in files.values() for v in f["versions"])

        kek_file.unlink()  # the old KEK is no longer needed
        assert await meshd("check-config", str(config)) == 0
        assert await meshd("keys", "rotate", "--config", str(config), "--purpose", "metering") == 0
        assert base64.b64decode(keyring_files(config)["metering"]["versions"][-1]["wrapped"]).startswith(b"vault:")
        stored.append(ring.encrypt(b"after", {"tenant": "acme"}))

    # A restart without the KEK file, the config as the migration left it, then as the operator finishes it.
    for finish in (False, True):
        if finish:
            edit(config, lambda keys: keys.update(kms=keys.pop("migrate_to")))
        async with running_daemons(configs, blocked=OTHERS) as ds:
            daemon = ds[REGION]
            keys = await keys_open(daemon)
            assert keys.status_doc(daemon)["kms"]["provider"] == "vault-transit"
            ring = daemon.hooks.keyring(daemon, "metering")
            assert [ring.decrypt(t, {"tenant": "acme"}) for t in stored] == \
                [f"usage {i}".encode() for i in range(20)] + [b"after"]
            assert ring.decrypt(during[-1], {"tenant": "acme"}) == b"during"
    assert not kek_file.exists()
    assert "keyring eu-west-1/metering: 1 key version(s) rewrapped by vault-transit" in caplog.text
    assert leaks(caplog.text.encode(), [openbao.token.encode()]) == []


async def test_rewrap_kek_follows_a_transit_rotation_and_a_refused_key_stops_within_the_ttl(
        tmp_path: Path, nats_server: NatsServer, openbao: Any, capsys: pytest.CaptureFixture[str]) -> None:
    need("meshd_kms_vault_transit")
    import hvac

    name = "meshd-rotating"
    openbao.transit_key(name)
    client = hvac.Client(url=openbao.url, token=openbao.token)
    settings = {"url": openbao.url, "key": name, "token": openbao.token}
    configs = write_federation(tmp_path, [REGION], nats_server.url, patch={"http": {"port": free_port()}, "keys": {
        "check_interval": "0.1s", "data_key_ttl": "0.3s", "purposes": ["metering"],
        "kms": {"provider": "vault-transit", "settings": settings}}})
    config = configs[REGION]

    def wrapped_prefixes() -> set[bytes]:
        f = keyring_files(config)["metering"]
        return {base64.b64decode(w)[:9] for w in [f["index_key"], *(v["wrapped"] for v in f["versions"])]}

    async with running_daemons(configs, blocked=OTHERS) as ds:
        daemon = ds[REGION]
        await keys_open(daemon)
        ring = daemon.hooks.keyring(daemon, "metering")
        text = ring.encrypt(b"kept across KEK versions", {"tenant": "acme"})
        assert wrapped_prefixes() == {b"vault:v1:"}

        client.secrets.transit.rotate_key(name=name)
        assert await meshd("keys", "rewrap", "--kek", "--config", str(config)) == 0
        assert "eu-west-1/metering: 1 key version(s) rewrapped by vault-transit" in capsys.readouterr().out
        assert wrapped_prefixes() == {b"vault:v2:"}
        # Transit's version 1 retired: the rewrapped keys are still confirmed at each TTL.
        client.secrets.transit.update_key_configuration(name=name, min_decryption_version=2)
        confirmed = daemon.metrics.value("keys_data_key_checks_total", result="confirmed")
        await until(lambda: daemon.metrics.value("keys_data_key_checks_total", result="confirmed") > confirmed,
                    what="data keys confirmed by Transit")
        assert ring.decrypt(text, {"tenant": "acme"}) == b"kept across KEK versions"

        # Version 2 retired without a rewrap: Transit refuses, and the daemon drops the keys within the TTL.
        client.secrets.transit.rotate_key(name=name)
        client.secrets.transit.update_key_configuration(name=name, min_decryption_version=3)
        await until(lambda: daemon.metrics.value("keys_data_key_checks_total", result="dropped") >= 1,
                    what="data keys dropped")
        with pytest.raises(KEKError, match="cannot unwrap version 1 of keyring eu-west-1/metering"):
            ring.decrypt(text, {"tenant": "acme"})
        # Put back in the KMS: the next use unwraps again.
        client.secrets.transit.update_key_configuration(name=name, min_decryption_version=2)
        assert ring.decrypt(text, {"tenant": "acme"}) == b"kept across KEK versions"
