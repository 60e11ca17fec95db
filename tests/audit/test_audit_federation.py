"""The audit on a real federation: nats-server with TLS and per-region users, real daemons.

A hardened setup passes every check; each deliberately weakened setting then
fails exactly the checks it should, in the controls of each framework that
those checks evidence, and the framework scores drop accordingly.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshd.natsserver import NatsServer, authorization_block, free_port, render_config
from meshd.testing import write_federation
from meshd_plugins.keys.configsecrets import encrypt_config_value
from meshd_plugins.keys.manager import KeyManager
from meshd_plugins.keys.settings import KeysConfig

pytestmark = pytest.mark.anyio

REGIONS = ["eu-west-1", "eu-central-1"]
FEDERATION = "audit"


# ---------------------------------------------------------------- PKI


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def write_pki(directory: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost, signed by it (PEM files, keys 0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("meshd test CA")).issuer_name(_name("meshd test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {"ca": directory / "ca.pem", "cert": directory / "server.pem", "key": directory / "server-key.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    paths["key"].chmod(0o600)
    return paths


# ---------------------------------------------------------------- the federation


@dataclass
class Federation:
    """A nats-server (TLS, one user per region) and the daemons' config files, hardened unless weakened."""

    root: Path
    binary: str
    tls: bool = True
    broad_user: bool = False
    passwords: dict[str, str] = field(default_factory=lambda: {r: secrets.token_urlsafe(18) for r in REGIONS})
    server: NatsServer | None = None
    configs: dict[str, Path] = field(default_factory=dict)

    def start_server(self) -> NatsServer:
        pki = write_pki(self.root / "pki")
        self.pki = pki
        port, monitor = free_port(), free_port()
        extra = {"auditor-broad": ("broad-" + secrets.token_urlsafe(8), {"publish": [">"], "subscribe": [">"]})} \
            if self.broad_user else None
        text = render_config(name="n1", host="127.0.0.1", port=port, monitor_port=monitor,
                             store_dir=self.root / "jetstream",
                             authorization=authorization_block(FEDERATION, self.passwords, extra_users=extra))
        if self.tls:
            text += (f'tls {{ cert_file: "{pki["cert"]}", key_file: "{pki["key"]}", ca_file: "{pki["ca"]}", '
                     "timeout: 5 }\n")
        conf = self.root / "nats.conf"
        conf.write_text(text)
        conf.chmod(0o600)
        self.server = NatsServer(self.root, name="n1", port=port, monitor_port=monitor, config_file=conf,
                                 binary=self.binary).start()
        return self.server

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"{'tls' if self.tls else 'nats'}://127.0.0.1:{self.server.port}"

    def write_configs(self) -> dict[str, Path]:
        nats: dict[str, Any] = {"servers": [self.url]}
        if self.tls:
            nats["tls"] = {"ca_file": str(self.pki["ca"])}
        self.configs = write_federation(self.root, REGIONS, self.url, federation=FEDERATION,
                                        patch={"nats": nats})
        for region, path in self.configs.items():
            self.set_password(region, path)
        return self.configs

    def state_dir(self, region: str) -> Path:
        return self.configs[region].parent / "state" / region

    def set_password(self, region: str, path: Path) -> None:
        """The region's NATS password, ``!encrypted`` under its own secrets keyring (the hardened way)."""
        ring = KeyManager(region=region, state_dir=self.state_dir(region), cfg=KeysConfig()).keyring("secrets")
        data = yaml.safe_load(path.read_text())
        data["nats"]["user"] = region
        data["nats"]["password"] = "@PASSWORD@"
        text = yaml.safe_dump(data, sort_keys=False)
        text = text.replace("'@PASSWORD@'", encrypt_config_value(ring, self.passwords[region]))
        path.write_text(text)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


@pytest.fixture
def federation(tmp_path: Path, nats_binary: str) -> Iterator[Federation]:
    fed = Federation(tmp_path, nats_binary)
    fed.start_server()
    fed.write_configs()
    try:
        yield fed
    finally:
        fed.stop()


async def test_smoke_daemons_connect_over_tls(federation: Federation) -> None:
    from meshd.testing import running_daemons, until
    async with running_daemons(federation.configs) as ds:
        for d in ds.values():
            await until(lambda d=d: d.transport.nc.is_connected, what="connected")
            assert d.transport.nc._server_info.get("tls_required")
