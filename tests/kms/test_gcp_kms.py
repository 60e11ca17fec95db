"""The ``gcp-kms`` provider, as far as it can be tested without Google Cloud.

No local server of the Cloud KMS API exists (there is no official emulator,
and none on PyPI serves KMS), so the provider is not in the contract suite:
Encrypt/Decrypt round trips, the AAD binding in Cloud KMS, the CRC32C checks
and GetCryptoKey are untested here. What is tested, for real: the settings,
the registration through the entry point, the credentials file, and that an
unreachable or silent endpoint is an outage reported within the timeout,
with no credential in the error or the log.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from meshd.kms import KMSUnavailableError
from meshd_plugins.keys.manager import ProviderLookup

from ..keys.keyleaks import leaks
from .cloudless import closed_port, imported_after_loading_plugins, silent_port
from .conftest import need

KEY_NAME = "projects/meshd-test/locations/europe-west1/keyRings/meshd/cryptoKeys/eu-west-1"


@pytest.fixture
def gcp() -> Any:
    return need("meshd_kms_gcp")


@pytest.fixture
def service_account(tmp_path: Path) -> tuple[Path, bytes]:
    """A service-account key file of a made-up account, and its private key (DER): the secret it holds.

    The client signs its own JWT with it (no token endpoint is called); the
    token_uri points at a closed loopback port all the same.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path = tmp_path / "sa.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "meshd-test", "private_key_id": "0" * 40, "private_key": pem,
        "client_email": "meshd@meshd-test.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": f"https://127.0.0.1:{closed_port()}/token"}))
    return path, der


def _settings(endpoint: str, credentials_file: Path, **more: object) -> dict[str, object]:
    return {"key_name": KEY_NAME, "endpoint": endpoint, "credentials_file": str(credentials_file),
            "timeout": 0.5, **more}


def test_it_registers_through_the_entry_point_and_imports_its_client_only_when_asked(
        gcp: Any, entry_point_lookup: ProviderLookup, service_account: tuple[Path, bytes]) -> None:
    path, _ = service_account
    assert entry_point_lookup("no-such-provider", {}) is None
    # The plugin answered for gcp-kms: it built the client and tried the endpoint.
    with pytest.raises(KMSUnavailableError, match="gcp-kms"):
        entry_point_lookup("gcp-kms", {**_settings(f"127.0.0.1:{closed_port()}", path, timeout=0.2),
                                       "region": "eu-west-1", "state_dir": "/s", "keys_dir": "/s/keys"})
    assert imported_after_loading_plugins(("google.cloud.kms", "grpc")) == []  # meshd loads it on every start


def test_an_unreachable_endpoint_is_an_outage_within_the_timeout(
        gcp: Any, service_account: tuple[Path, bytes], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    path, private_key = service_account
    start = time.monotonic()
    with pytest.raises(KMSUnavailableError) as refused:
        gcp.GcpKmsProvider(gcp.GcpKmsSettings.from_config(_settings(f"127.0.0.1:{closed_port()}", path)))
    assert time.monotonic() - start < 5  # timeout 1 s, retries included (the client's default: 60 s)
    assert KEY_NAME in str(refused.value) and "127.0.0.1:" in str(refused.value)  # what failed, and where
    with silent_port() as port:
        start = time.monotonic()
        with pytest.raises(KMSUnavailableError, match="DeadlineExceeded"):
            gcp.GcpKmsProvider(gcp.GcpKmsSettings.from_config(_settings(f"127.0.0.1:{port}", path)))
        assert time.monotonic() - start < 5
    assert leaks((str(refused.value) + caplog.text).encode(), [private_key]) == []


def test_a_damaged_credentials_file_is_named_and_not_quoted(gcp: Any, tmp_path: Path) -> None:
    path = tmp_path / "sa.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "p", "private_key_id": "0", "client_id": "1",
        "private_key": "-----BEGIN PRIVATE KEY-----\nczNjcjN0LW5vdC1hLWtleQ==\n-----END PRIVATE KEY-----\n",
        "client_email": "meshd@p.iam.gserviceaccount.com", "token_uri": "https://127.0.0.1:1/token"}))
    with pytest.raises(ValueError, match=r"keys\.kms\.settings\.credentials_file") as err:
        gcp.GcpKmsProvider(gcp.GcpKmsSettings.from_config({"key_name": KEY_NAME, "credentials_file": str(path)}))
    assert "czNjcjN0" not in str(err.value) and "s3cr3t" not in str(err.value)
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"keys\.kms\.settings\.credentials_file"):
        gcp.GcpKmsProvider(gcp.GcpKmsSettings.from_config({"key_name": KEY_NAME, "credentials_file": str(path)}))


def test_the_location_comes_from_the_key_name(gcp: Any) -> None:
    assert gcp.GcpKmsSettings.from_config({"key_name": KEY_NAME}).location == "europe-west1"


@pytest.mark.parametrize(("settings", "named"), [
    ({}, "keys.kms.settings.key_name"),
    ({"key_name": "eu-west-1"}, "keys.kms.settings.key_name"),
    ({"key_name": KEY_NAME + "/cryptoKeyVersions/3"}, "keys.kms.settings.key_name"),
    ({"key_name": KEY_NAME, "credentials_file": "/no/such/sa.json"}, "keys.kms.settings.credentials_file"),
    ({"key_name": KEY_NAME, "private_key": "s3cr3t"}, "keys.kms.settings.private_key"),
    ({"key_name": KEY_NAME, "timeout": 0}, "keys.kms.settings.timeout"),
])
def test_bad_settings_name_the_key_and_not_the_value(gcp: Any, settings: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named.replace(".", r"\.")) as err:
        gcp.GcpKmsSettings.from_config({**settings, "region": "eu-west-1", "state_dir": "/s", "keys_dir": "/s/keys"})
    assert "s3cr3t" not in str(err.value) and str(err.value).startswith("gcp-kms: ")
