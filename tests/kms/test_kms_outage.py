"""A daemon whose KMS goes away: it keeps encrypting from the data keys it holds, reports it, and recovers."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import nats
import pytest

from meshd import Alert, hookimpl
from meshd.natsserver import NatsServer
from meshd.testing import BUILTIN_PLUGINS, TcpProxy, running_daemons, until, write_federation
from meshd_plugins.keys.keyfile import KeyringFile

from ..keys.keyleaks import leaks
from .conftest import TRANSIT_KEY, need

pytestmark = pytest.mark.anyio

OTHERS = [p for p in BUILTIN_PLUGINS if p != "keys"]


class AlertRecorder:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    @hookimpl
    def meshd_alert(self, alert: Alert) -> None:
        self.alerts.append(alert)

    def statuses(self, name: str) -> list[str]:
        return [a.status for a in self.alerts if a.labels.get("alertname") == name]


def data_keys(keys_dir: Path, provider: Any) -> list[bytes]:
    """Every data and index key of the keyrings in ``keys_dir``, unwrapped here through the provider."""
    out = []
    for path in sorted(keys_dir.glob("*.json")):
        doc, _ = KeyringFile(path).read()
        ctx = {"region": doc.region, "purpose": doc.purpose, "key_id": doc.key_id}
        out.append(provider.unwrap(doc.index_key, {**ctx, "version": "index"}))
        out += [provider.unwrap(rec.wrapped, {**ctx, "version": str(v)}) for v, rec in doc.versions.items()]
    return out


def kms_check(daemon: Any) -> bool:
    return next(c.ok for c in daemon.hooks.health_checks(daemon) if c.name == "kms")


async def test_a_kms_outage_keeps_encryption_going_alerts_and_resolves(
        tmp_path: Path, nats_server: NatsServer, openbao: Any, caplog: pytest.LogCaptureFixture) -> None:
    transit = need("meshd_kms_vault_transit")
    caplog.set_level(logging.DEBUG)
    captured: list[bytes] = []

    async def capture(msg: Any) -> None:
        captured.append(msg.subject.encode() + json.dumps(msg.headers or {}).encode() + msg.data)

    raw = await nats.connect(nats_server.url)
    await raw.subscribe(">", cb=capture)  # every message on the server
    await raw.flush()
    proxy = TcpProxy(("127.0.0.1", openbao.port))
    settings = {"url": f"http://127.0.0.1:{proxy.port}", "key": TRANSIT_KEY, "token": openbao.token, "timeout": 1}
    configs = write_federation(tmp_path, ["eu-west-1"], nats_server.url, patch={"keys": {
        "check_interval": "0.2s", "purposes": ["secrets", "metering"],
        "kms": {"provider": "vault-transit", "settings": settings}}})
    try:
        async with running_daemons(configs, blocked=OTHERS, extra_plugins=[("recorder", AlertRecorder)]) as ds:
            daemon = ds["eu-west-1"]
            keys = daemon.hooks.pm.get_plugin("keys")
            recorder: AlertRecorder = daemon.hooks.pm.get_plugin("recorder")
            await until(lambda: keys.status_doc(daemon)["ok"] and daemon.metrics.value("keys_kms_available") == 1,
                        what="keyrings open on vault-transit")
            assert keys.status_doc(daemon)["kms"]["provider"] == "vault-transit" and kms_check(daemon)
            ring = daemon.hooks.keyring(daemon, "metering")
            before = ring.encrypt(b"usage before", {"tenant": "acme"})

            proxy.cut(reset=True)
            await until(lambda: "firing" in recorder.statuses("KMSUnavailable"), what="KMSUnavailable fired")
            assert not kms_check(daemon) and daemon.metrics.value("keys_kms_available") == 0
            assert daemon.metrics.value("keys_kms_check_failures_total") >= 1
            assert "vault-transit" in keys.status_doc(daemon)["kms_unavailable"]
            firing = next(a for a in recorder.alerts if a.labels["alertname"] == "KMSUnavailable")
            assert firing.labels["region"] == "eu-west-1" and "vault-transit" in firing.annotations["description"]
            assert openbao.token not in str(firing.annotations)
            # Served from the data keys in memory: no KMS round trip, no fallback to another provider.
            during = ring.encrypt(b"usage during", {"tenant": "acme"})
            assert ring.decrypt(before, {"tenant": "acme"}) == b"usage before"
            assert keys.status_doc(daemon)["kms"]["provider"] == "vault-transit"

            proxy.heal()
            await until(lambda: "resolved" in recorder.statuses("KMSUnavailable"), what="KMSUnavailable resolved")
            assert kms_check(daemon) and daemon.metrics.value("keys_kms_available") == 1
            assert keys.status_doc(daemon)["kms_unavailable"] is None
            assert ring.decrypt(during, {"tenant": "acme"}) == b"usage during"
    finally:
        proxy.close()
        await raw.drain()
    # Neither the token nor a data key reached the bus or the log, during the outage or out of it.
    provider = transit.VaultTransitProvider(transit.TransitSettings.from_config({**settings, "url": openbao.url}))
    secrets = [openbao.token.encode(), *data_keys(configs["eu-west-1"].parent / "state" / "eu-west-1" / "keys",
                                                   provider)]
    assert len(secrets) == 5 and captured
    assert leaks(b"\n".join(captured), secrets) == []
    assert "vault-transit does not answer" in caplog.text  # the daemon's log is what was searched
    assert leaks(caplog.text.encode(), secrets) == []
