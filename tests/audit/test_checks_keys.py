"""keys.*: rotation across the federation, no data under a retired key version."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from meshd.natsserver import NatsServer
from meshd.plugins import Hooks
from meshd.testing import running_daemons, until, write_federation

from .conftest import run_check
from .test_checks_rest import ONLY_KEYS, encrypted_password_config

pytestmark = pytest.mark.anyio
DAY = 86400.0


async def test_fresh_keys_are_within_their_rotation_period(tmp_path: Path, nats_server: NatsServer) -> None:
    configs = write_federation(tmp_path, ["eu-west-1"], nats_server.url)
    async with running_daemons(configs, blocked=ONLY_KEYS) as running:
        result = await run_check("keys.rotation", running["eu-west-1"])
    assert result.status == "pass", result.detail
    rings = result.evidence["regions"]["eu-west-1"]["keyrings"]
    assert [r["purpose"] for r in rings] == ["secrets"] and rings[0]["overdue"] is False


async def test_an_overdue_key_fails_naming_region_and_purpose(tmp_path: Path, nats_server: NatsServer) -> None:
    # Rotation by hand only (90 days), and a keyring made 200 days ago.
    configs = write_federation(tmp_path, ["eu-west-1"], nats_server.url,
                               patch={"keys": {"auto_rotate_period": 0}})
    hooks = Hooks.load(blocked=ONLY_KEYS)
    config = hooks.load_config(configs["eu-west-1"])
    manager = hooks.pm.get_plugin("keys").manager_for(config, hooks, short_lived=True)
    manager.clock = lambda: time.time() - 200 * DAY
    manager.keyring("secrets")
    async with running_daemons(configs, blocked=ONLY_KEYS) as running:
        result = await run_check("keys.rotation", running["eu-west-1"])
    assert result.status == "fail"
    assert "keys overdue for rotation: eu-west-1/secrets (version 1, 200 days old)" in result.detail


async def test_a_region_not_heard_from_is_named_but_left_to_its_own_audit(tmp_path: Path,
                                                                          nats_server: NatsServer) -> None:
    configs = write_federation(tmp_path, ["eu-west-1", "us-east-1"], nats_server.url)
    async with running_daemons({"eu-west-1": configs["eu-west-1"]}, blocked=ONLY_KEYS) as running:
        result = await run_check("keys.rotation", running["eu-west-1"])
    assert result.status == "pass", result.detail
    assert result.evidence["not_announced"] == ["us-east-1"]


async def test_a_config_secret_under_a_retired_version_fails(tmp_path: Path, nats_server: NatsServer) -> None:
    configs = encrypted_password_config(tmp_path, nats_server.url, "some-password")
    async with running_daemons(configs, blocked=ONLY_KEYS) as running:
        daemon = running["eu-west-1"]
        result = await run_check("keys.retired_versions", daemon)
        assert result.status == "pass", result.detail
        assert result.evidence["versions_stored"]["secrets"]["config"] == [1]

        keys = daemon.hooks.pm.get_plugin("keys")
        ring = keys.manager_for(daemon.config, daemon.hooks, short_lived=True).keyring("secrets", create=False)
        ring.rotate()
        ring.set_min_versions(decryption=2)

        async def retired() -> bool:
            rings = keys.status_doc(daemon)["keyrings"]
            return rings[0]["min_decryption_version"] == 2
        await until(retired, what="the daemon to see min_decryption_version 2")
        result = await run_check("keys.retired_versions", daemon)
    assert result.status == "fail"
    assert "config still holds data under retired version(s) 1 of keyring secrets" in result.detail
    assert "min_decryption_version 2" in result.detail


async def test_ledger_rows_under_a_retired_version_fail(tmp_path: Path, nats_server: NatsServer) -> None:
    from meshd_plugins.metering.sdk import UsageClient

    from .test_checks_rest import metering_patch

    blocked = ("health", "membership", "failover", "routing", "alerts", "billing", "fencing", "partners")
    configs = write_federation(tmp_path, ["eu-west-1"], nats_server.url, patch=metering_patch(tmp_path))
    client = await UsageClient.connect([nats_server.url], federation="test", region="eu-west-1")
    try:
        async with running_daemons(configs, blocked=blocked) as running:
            daemon = running["eu-west-1"]
            runtime = daemon.hooks.pm.get_plugin("metering").runtime
            await until(lambda: runtime.ledger is not None, what="the ledger to open")
            await client.publish([{"id": "e1", "source": "//svc", "tenant": "acme-eu", "meter": "api_calls",
                                   "value": 2}])
            await until(lambda: runtime.accepted == 1, what="the event in the ledger")
            result = await run_check("keys.retired_versions", daemon)
            assert result.status == "pass", result.detail
            assert result.evidence["versions_stored"]["metering"]["ledger"] == [1]

            keys = daemon.hooks.pm.get_plugin("keys")
            ring = keys.manager_for(daemon.config, daemon.hooks, short_lived=True).keyring("metering", create=False)
            ring.rotate()
            ring.set_min_versions(decryption=2)
            await until(lambda: {r["purpose"]: r for r in keys.status_doc(daemon)["keyrings"]}["metering"]
                        ["min_decryption_version"] == 2, what="the daemon to see the retired version")
            result = await run_check("keys.retired_versions", daemon)
    finally:
        await client.close()
    assert result.status == "fail"
    assert "ledger still holds data under retired version(s) 1 of keyring metering" in result.detail
