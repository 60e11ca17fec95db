"""transit.*: NATS over TLS with verification, the partner API listener's TLS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from meshd.natsserver import NatsServer, free_port, render_config
from meshd.testcerts import Certs, make_certs
from meshd.testing import until

from .conftest import daemons, run_check

pytestmark = pytest.mark.anyio
BLOCK = ("health", "membership", "failover", "routing", "alerts", "metering", "billing", "fencing", "partners")


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return make_certs(tmp_path / "tls")


@pytest.fixture
def tls_server(tmp_path: Path, nats_binary: str, certs: Certs) -> Iterator[NatsServer]:
    """A nats-server that accepts TLS clients only."""
    port, monitor = free_port(), free_port()
    workdir = tmp_path / "nats-tls"
    workdir.mkdir()
    conf = workdir / "nats.conf"
    conf.write_text(render_config(name="tls-1", host="127.0.0.1", port=port, monitor_port=monitor,
                                  store_dir=workdir / "js")
                    + f'tls {{ cert_file: "{certs.cert}", key_file: "{certs.key}" }}\n')
    server = NatsServer(workdir, name="tls-1", port=port, monitor_port=monitor, config_file=conf,
                        binary=nats_binary).start()
    try:
        yield server
    finally:
        server.stop()


async def test_nats_over_verified_tls_passes(tmp_path: Path, tls_server: NatsServer, certs: Certs) -> None:
    url = f"tls://127.0.0.1:{tls_server.port}"
    async with daemons(tmp_path, url, blocked=BLOCK,
                       patch={"nats": {"servers": [url], "tls": {"ca_file": str(certs.ca)}}}) as running:
        result = await run_check("transit.nats_tls", running["eu-west-1"])
    assert result.status == "pass", result.detail
    assert result.evidence["server_tls_required"] is True
    assert result.evidence["tls"]["verify"] is True


async def test_nats_tls_without_verification_fails(tmp_path: Path, tls_server: NatsServer, certs: Certs) -> None:
    url = f"tls://127.0.0.1:{tls_server.port}"
    async with daemons(tmp_path, url, blocked=BLOCK,
                       patch={"nats": {"servers": [url], "tls": {"verify": False}}}) as running:
        result = await run_check("transit.nats_tls", running["eu-west-1"])
    assert result.status == "fail"
    assert "nats.tls.verify is false" in result.detail


async def test_nats_without_tls_fails(tmp_path: Path, nats_server: NatsServer) -> None:
    async with daemons(tmp_path, nats_server.url, blocked=BLOCK) as running:
        result = await run_check("transit.nats_tls", running["eu-west-1"])
    assert result.status == "fail"
    assert "the NATS connection is not encrypted" in result.detail and "nats.tls is not set" in result.detail


async def test_partner_api_tls_not_applicable_when_not_served(tmp_path: Path, nats_server: NatsServer) -> None:
    async with daemons(tmp_path, nats_server.url, blocked=BLOCK) as running:
        result = await run_check("transit.partner_api_tls", running["eu-west-1"])
    assert result.status == "not_applicable" and "partners plugin" in result.detail
    blocked = tuple(b for b in BLOCK if b != "partners")
    (tmp_path / "2").mkdir()
    async with daemons(tmp_path / "2", nats_server.url, blocked=blocked) as running:
        result = await run_check("transit.partner_api_tls", running["eu-west-1"])
    assert result.status == "not_applicable" and "partners.enabled is false" in result.detail


PARTNERS_ONLY = tuple(b for b in BLOCK if b != "partners")


@pytest.mark.parametrize("tls", [True, False])
async def test_partner_api_tls_when_served(tmp_path: Path, nats_server: NatsServer, certs: Certs, tls: bool) -> None:
    partners: dict[str, object] = {"enabled": True, "port": 0}
    registry = {"registry": "kv"}
    if tls:
        partners["tls"] = {"cert_file": str(certs.cert), "key_file": str(certs.key)}
    async with daemons(tmp_path, nats_server.url, blocked=PARTNERS_ONLY,
                       patch={"partners": partners, "tenants": registry}) as running:
        daemon = running["eu-west-1"]
        runtime = daemon.hooks.pm.get_plugin("partners").runtime
        await until(lambda: runtime.state == "serving", what="the partner API to serve")
        result = await run_check("transit.partner_api_tls", daemon)
    if tls:
        assert result.status == "pass", result.detail
        assert result.evidence["certificate"]["subject"] == "CN=localhost"
    else:
        assert result.status == "fail"
        assert f"listens on 127.0.0.1:{runtime.port} without TLS" in result.detail
