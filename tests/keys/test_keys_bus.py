"""The keys plugin in daemons on a real nats-server: federation view, sovereignty, alerts, the key service."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import anyio
import nats
import pytest
import yaml

from meshd import Alert, hookimpl
from meshd.natsserver import NatsServer
from meshd.testing import BUILTIN_PLUGINS, running_daemons, until, write_federation
from meshd_plugins.keys.manager import KeyManager
from meshd_plugins.keys.settings import KeysConfig

from .keyleaks import key_material, leaks

pytestmark = pytest.mark.anyio

OTHERS = [p for p in BUILTIN_PLUGINS if p != "keys"]
REGIONS = ["eu-west-1", "us-east-1", "ap-southeast-1"]
FAST = {"check_interval": "0.2s", "announce_interval": "1s"}


class Recorder:
    """A test plugin: every alert raised and every key rotation reported, per daemon."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self.rotated: list[dict[str, Any]] = []

    @hookimpl
    def meshd_alert(self, alert: Alert) -> None:
        self.alerts.append(alert)

    @hookimpl
    def meshd_key_rotated(self, metadata: dict[str, Any]) -> None:
        self.rotated.append(metadata)


def view(daemon: Any) -> dict[str, Any]:
    return daemon.hooks.pm.get_plugin("keys").status_doc(daemon)["federation"]


def versions_seen(daemon: Any, purpose: str) -> dict[str, int]:
    return {region: ring["version"] for region, entry in view(daemon).items()
            for ring in entry["keyrings"] if ring["purpose"] == purpose}


def state_dir(config: Path, region: str) -> Path:
    return config.parent / "state" / region


async def test_rotations_reach_every_region_and_no_key_bytes_ever_reach_the_bus(
        tmp_path: Path, nats_server: NatsServer) -> None:
    configs = write_federation(tmp_path, REGIONS, nats_server.url, patch={"keys": {
        **FAST, "purposes": ["secrets", "metering"], "max_encryptions_per_version": 20, "count_reserve_block": 4}})
    captured: list[bytes] = []

    async def capture(msg: Any) -> None:
        headers = json.dumps(msg.headers or {}).encode()
        captured.append(msg.subject.encode() + b"\n" + headers + b"\n" + msg.data)

    raw = await nats.connect(nats_server.url)
    await raw.subscribe(">", cb=capture)  # every message on the server, not only meshd.<fed>.>
    await raw.flush()
    async with running_daemons(configs, blocked=OTHERS, extra_plugins=[("recorder", Recorder)]) as ds:
        for d in ds.values():
            await until(lambda d=d: versions_seen(d, "metering") == {r: 1 for r in REGIONS}, what="first views")
        # Manual rotation through the admin route of one region...
        eu = ds["eu-west-1"]
        token = (state_dir(configs["eu-west-1"], "eu-west-1") / "admin.token").read_text().strip()
        status, body = await anyio.to_thread.run_sync(post, eu.http.bound_port, "/v1/keys/rotate",
                                                       {"purposes": ["metering"]}, token)
        assert status == 200 and body["rotated"][0]["version"] == 2
        # ...count-based rotation in another, through the plugin API other plugins use...
        us = ds["us-east-1"]
        ring = us.hooks.keyring(us, "metering")
        texts = [ring.encrypt(f"usage {i}".encode(), {"tenant": "acme"}) for i in range(45)]
        assert ring.latest_version == 3
        # ...and the region key service, whose requests stay on meshd-kms.<fed>.<region>.
        reply = await raw.request("meshd-kms.test.ap-southeast-1.encrypt", json.dumps(
            {"purpose": "service", "context": {"tenant": "t1"},
             "plaintext": base64.b64encode(b"app data").decode()}).encode(), timeout=5)
        assert json.loads(reply.data)["ciphertext"].startswith("meshd:v1:")
        expected = {"eu-west-1": 2, "us-east-1": 3, "ap-southeast-1": 1}
        for d in ds.values():
            await until(lambda d=d: versions_seen(d, "metering") == expected, what=f"{d.region} sees the rotations")
        assert [ring.decrypt(t, {"tenant": "acme"}) for t in texts] == [f"usage {i}".encode() for i in range(45)]
        recorder: Recorder = us.hooks.pm.get_plugin("recorder")
        await until(lambda: [m["reason"] for m in recorder.rotated] == ["count", "count"], what="key_rotated hook")
        assert recorder.rotated[-1]["version"] == 3 and recorder.rotated[-1]["region"] == "us-east-1"
        assert not {"key", "wrapped", "material"} & set(recorder.rotated[-1])
    await raw.drain()

    material = key_material(state_dir(configs[r], r) for r in REGIONS)
    assert len(material) >= 3 * 8  # every KEK, data key, index key and wrapped key of three regions
    announcements = [m for m in captured if m.startswith(b"meshd.test.keys.")]
    assert len(announcements) >= 6
    assert any(b'"fingerprint"' in m for m in announcements)
    found = [(m[:60], leak) for m in captured for leak in leaks(m, material)]
    assert not found, f"key bytes on the bus: {found[:5]}"


def post(port: int, path: str, body: Any, token: str) -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_an_overdue_key_alerts_in_every_region_and_resolves_after_rotation(
        tmp_path: Path, nats_server: NatsServer) -> None:
    configs = write_federation(tmp_path, REGIONS, nats_server.url, patch={"keys": FAST})
    long_ago = time.time() - 100 * 86400
    # us-east-1 rotates by hand only, and its key is 100 days old: overdue (due after 90 days + 1 day grace).
    data = yaml.safe_load(configs["us-east-1"].read_text())
    data["keys"]["auto_rotate_period"] = 0
    configs["us-east-1"].write_text(yaml.safe_dump(data))
    # ap-southeast-1 rotates automatically: its 100-day-old key is rotated by age as soon as it starts.
    for region in ("us-east-1", "ap-southeast-1"):
        KeyManager(region=region, state_dir=state_dir(configs[region], region), cfg=KeysConfig(),
                   clock=lambda: long_ago).keyring("secrets")

    async with running_daemons(configs, blocked=OTHERS, extra_plugins=[("recorder", Recorder)]) as ds:
        recorders = {r: d.hooks.pm.get_plugin("recorder") for r, d in ds.items()}

        def firing(region: str) -> list[Alert]:
            return [a for a in recorders[region].alerts if a.labels["alertname"] == "KeyRotationOverdue"]

        for region in REGIONS:
            await until(lambda region=region: firing(region), what=f"{region} raises KeyRotationOverdue")
        for region in REGIONS:
            alerts = firing(region)
            assert {a.labels["region"] for a in alerts} == {"us-east-1"}, alerts
            first = alerts[0]
            assert first.status == "firing" and first.labels["purpose"] == "secrets"
            assert first.labels["severity"] == "warning" and "us-east-1" in first.annotations["summary"]
            assert "meshd keys rotate" in first.annotations["description"]
        assert [m["reason"] for m in recorders["ap-southeast-1"].rotated] == ["age"]

        us = ds["us-east-1"]
        us.hooks.pm.get_plugin("keys").manager_for(us.config, us.hooks).keyring("secrets").rotate()
        for region in REGIONS:
            await until(lambda region=region: firing(region)[-1].status == "resolved",
                        what=f"{region} resolves the alert")


async def test_the_region_key_service(tmp_path: Path, nats_server: NatsServer) -> None:
    configs = write_federation(tmp_path, ["eu-west-1"], nats_server.url, patch={"keys": FAST})
    raw = await nats.connect(nats_server.url)

    async def ask(op: str, body: Any) -> dict[str, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        reply = await raw.request(f"meshd-kms.test.eu-west-1.{op}", data, timeout=5)
        return json.loads(reply.data)

    async with running_daemons(configs, blocked=OTHERS) as ds:
        plain = base64.b64encode(b"card 4242").decode()
        enc = await ask("encrypt", {"context": {"tenant": "acme"}, "plaintext": plain})
        assert enc["ok"] and enc["ciphertext"].startswith("meshd:v1:")
        dec = await ask("decrypt", {"purpose": "service", "context": {"tenant": "acme"},
                                    "ciphertext": enc["ciphertext"]})
        assert dec == {"ok": True, "plaintext": plain}
        wrong = await ask("decrypt", {"context": {"tenant": "evil"}, "ciphertext": enc["ciphertext"]})
        assert wrong["ok"] is False and wrong["error"]["code"] == "auth_failed"
        index = await ask("blind_index", {"value": base64.b64encode(b"acme").decode()})
        assert index["ok"] and len(index["index"]) == 32
        daemon = ds["eu-west-1"]
        daemon.hooks.pm.get_plugin("keys").manager_for(daemon.config, daemon.hooks).keyring("service").rotate()
        moved = await ask("rewrap", {"context": {"tenant": "acme"}, "ciphertext": enc["ciphertext"]})
        assert moved["ok"] and moved["ciphertext"].startswith("meshd:v2:")
        for op, body, code in (("decrypt", b"not json", "bad_request"), ("encrypt", [1], "bad_request"),
                               ("encrypt", {"plaintext": "***"}, "bad_request"),
                               ("encrypt", {"purpose": "secrets", "plaintext": plain}, "purpose_not_served"),
                               ("encrypt", {"purpose": "metering", "plaintext": plain}, "purpose_not_served"),
                               ("export", {}, "unknown_op"),
                               ("decrypt", {"ciphertext": "meshd:v1:AAAA"}, "truncated")):
            answer = await ask(op, body)
            assert answer["ok"] is False and answer["error"]["code"] == code, (op, answer)
        # The plugin API: any purpose but the config secrets' keyring.
        assert daemon.hooks.keyring(daemon, "metering") is not None
        assert daemon.hooks.keyring(daemon, "secrets") is None
        assert daemon.hooks.keyring(daemon, "Not A Purpose") is None
        assert daemon.metrics.value("keys_service_requests_total", op="encrypt", result="ok") == 1
        assert daemon.metrics.value("keys_service_requests_total", op="encrypt", result="purpose_not_served") == 2
        # Every failed decryption is counted by keyring and reason (tampering shows on a dashboard).
        assert daemon.metrics.value("keys_decrypt_failures_total", purpose="service", reason="auth_failed") == 1
        assert daemon.metrics.value("keys_decrypt_failures_total", purpose="service", reason="truncated") == 1
    await raw.drain()


class FlakyKMS:
    """A provider plugin whose KMS is unreachable until ``up`` is set (a remote KMS during an outage)."""

    up = False

    @hookimpl
    def meshd_kms_provider(self, name: str, config: dict[str, Any]) -> Any:
        if name != "flaky":
            return None
        from meshd_plugins.keys.kek import LocalKMSProvider

        if not FlakyKMS.up:
            raise ConnectionError("kms.example: connection refused")
        return LocalKMSProvider(b"k" * 32, "flaky")


async def test_keyrings_come_back_when_the_kms_does(tmp_path: Path, nats_server: NatsServer) -> None:
    configs = write_federation(tmp_path, ["eu-west-1"], nats_server.url,
                               patch={"keys": {**FAST, "kms": {"provider": "flaky"}}})
    FlakyKMS.up = False
    async with running_daemons(configs, blocked=OTHERS, extra_plugins=[("flaky", FlakyKMS)]) as ds:
        daemon = ds["eu-west-1"]
        plugin = daemon.hooks.pm.get_plugin("keys")
        doc = plugin.status_doc(daemon)
        assert doc["ok"] is False and "'flaky' failed to open: ConnectionError: kms.example" in doc["error"]
        assert [c.ok for c in daemon.hooks.health_checks(daemon) if c.name == "keys"] == [False]
        assert daemon.hooks.keyring(daemon, "metering") is None
        assert daemon.metrics.value("keys_kek_ok") == 0
        FlakyKMS.up = True
        await until(lambda: plugin.status_doc(daemon)["ok"], what="keyrings open once the KMS answers")
        assert daemon.metrics.value("keys_kek_ok") == 1
        assert [c.ok for c in daemon.hooks.health_checks(daemon) if c.name == "keys"] == [True]
        assert daemon.hooks.keyring(daemon, "metering") is not None
        await until(lambda: plugin.status_doc(daemon)["service"]["enabled"], what="key service started")
