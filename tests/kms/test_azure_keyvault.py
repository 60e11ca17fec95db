"""The ``azure-keyvault`` provider, as far as it can be tested without Azure.

No local server of the Key Vault API exists that azure-keyvault-keys can
talk to, so the provider is not in the contract suite: get_key, wrapKey and
unwrapKey against Key Vault, its answers to a damaged or foreign wrap (400,
404), rotation and the credential chain are untested here.

What is tested, for real:

- the envelope that binds the wrap context (Key Vault cannot), with the
  client library's own ``CryptographyClient`` doing RSA-OAEP-256 and A256KW
  locally on a key made here (``from_jwk``): the same algorithms and client
  code, not the service;
- the settings, the registration through the entry point, and that an
  unreachable or silent vault is an outage reported within the timeout,
  with no secret in the error or the log.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from meshd.kms import KMSUnavailableError
from meshd_plugins.keys.manager import ProviderLookup

from ..keys.keyleaks import leaks
from .cloudless import closed_port, imported_after_loading_plugins, silent_port
from .conftest import need

CONTEXT = {"region": "eu-west-1", "purpose": "secrets", "key_id": "k-0123456789abcdef", "version": "1"}
VERSION = "0123456789abcdef0123456789abcdef"
SECRET = "meshd-test-client-s3cr3t"


@pytest.fixture
def azure() -> Any:
    return need("meshd_kms_azure")


@pytest.fixture(scope="module")
def rsa_client() -> Any:
    """A CryptographyClient on an RSA key made here: RSA-OAEP-256 by the client library, locally."""
    keys = need("azure.keyvault.keys")
    crypto = need("azure.keyvault.keys.crypto")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private, public = key.private_numbers(), key.public_key().public_numbers()

    def b(number: int) -> bytes:
        return number.to_bytes((number.bit_length() + 7) // 8, "big")

    jwk = keys.JsonWebKey(kty="RSA", key_ops=["wrapKey", "unwrapKey"], n=b(public.n), e=b(public.e),
                          d=b(private.d), p=b(private.p), q=b(private.q), dp=b(private.dmp1),
                          dq=b(private.dmq1), qi=b(private.iqmp))
    return crypto.CryptographyClient.from_jwk(jwk)


@pytest.fixture(scope="module")
def oct_client() -> Any:
    """A CryptographyClient on an AES-256 key made here (a Managed HSM ``oct`` key's A256KW), locally."""
    keys = need("azure.keyvault.keys")
    crypto = need("azure.keyvault.keys.crypto")
    return crypto.CryptographyClient.from_jwk(keys.JsonWebKey(kty="oct", k=os.urandom(32),
                                                              key_ops=["wrapKey", "unwrapKey"]))


def _seal(envelope: Any, client: Any, algorithm: str, key: bytes, context: dict[str, str]) -> bytes:
    crypto = need("azure.keyvault.keys.crypto")
    alg = crypto.KeyWrapAlgorithm(algorithm)
    return bytes(envelope.seal(key, context, VERSION, algorithm, lambda cek: client.wrap_key(alg, cek).encrypted_key))


def _open(envelope: Any, client: Any, blob: bytes, context: dict[str, str]) -> bytes:
    crypto = need("azure.keyvault.keys.crypto")
    parsed = envelope.Envelope.parse(blob)
    alg = crypto.KeyWrapAlgorithm(parsed.algorithm)
    return bytes(parsed.open(context, lambda wrapped_cek: client.unwrap_key(alg, wrapped_cek).key))


@pytest.mark.parametrize(("client", "algorithm"), [("rsa_client", "RSA-OAEP-256"), ("oct_client", "A256KW")])
def test_the_envelope_opens_only_in_its_context(azure: Any, client: str, algorithm: str,
                                                request: pytest.FixtureRequest) -> None:
    envelope = need("meshd_kms_azure.envelope")
    kv = request.getfixturevalue(client)
    key = os.urandom(32)
    blob = _seal(envelope, kv, algorithm, key, dict(CONTEXT))
    assert key not in blob and _seal(envelope, kv, algorithm, key, dict(CONTEXT)) != blob  # a fresh CEK each time
    parsed = envelope.Envelope.parse(blob)
    assert (parsed.key_version, parsed.algorithm) == (VERSION, algorithm)  # what unwrap needs after a rotation
    assert _open(envelope, kv, blob, dict(CONTEXT)) == key
    for field in CONTEXT:
        with pytest.raises(ValueError, match="does not open in this context"):
            _open(envelope, kv, blob, {**CONTEXT, field: CONTEXT[field] + "x"})
    with pytest.raises(ValueError, match="does not open in this context"):
        _open(envelope, kv, blob, {**CONTEXT, "tenant": "acme"})
    with pytest.raises(ValueError, match="key_id"):  # no wrap, and no unwrap, without the whole context
        _seal(envelope, kv, algorithm, key, {k: v for k, v in CONTEXT.items() if k != "key_id"})


def test_a_damaged_or_relabelled_envelope_does_not_open(azure: Any, rsa_client: Any,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    envelope = need("meshd_kms_azure.envelope")
    key = os.urandom(32)
    blob = _seal(envelope, rsa_client, "RSA-OAEP-256", key, dict(CONTEXT))
    caplog.set_level(logging.ERROR, logger="azure")  # the client warns on every local unwrap that fails
    for i in range(len(blob)):  # every byte: header, wrapped one-time key, nonce, sealed key, tag
        damaged = bytearray(blob)
        damaged[i] ^= 0x01
        with pytest.raises(ValueError):
            _open(envelope, rsa_client, bytes(damaged), dict(CONTEXT))
    for cut in (0, 3, 10, len(blob) // 2, len(blob) - 1):
        with pytest.raises(ValueError):
            _open(envelope, rsa_client, blob[:cut], dict(CONTEXT))
    # Another key version's label on the same bytes: the one-time key unwraps, the header (AAD) does not match.
    parsed = envelope.Envelope.parse(blob)
    relabelled = blob.replace(VERSION.encode(), b"f" * 32, 1)
    assert envelope.Envelope.parse(relabelled).wrapped_cek == parsed.wrapped_cek
    with pytest.raises(ValueError, match="does not open"):
        _open(envelope, rsa_client, relabelled, dict(CONTEXT))


def test_it_registers_through_the_entry_point_and_imports_its_client_only_when_asked(
        azure: Any, entry_point_lookup: ProviderLookup) -> None:
    assert entry_point_lookup("no-such-provider", {}) is None
    with pytest.raises(KMSUnavailableError, match="azure-keyvault"):  # the plugin answered and tried the vault
        entry_point_lookup("azure-keyvault", {"vault_url": f"https://127.0.0.1:{closed_port()}", "key_name": "meshd",
                                              "max_attempts": 1, "region": "eu-west-1", "state_dir": "/s",
                                              "keys_dir": "/s/keys"})
    assert imported_after_loading_plugins(("azure.",)) == []  # meshd loads it on every start


def test_an_unreachable_vault_is_an_outage_within_the_timeout(
        azure: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret_file = tmp_path / "client-secret"
    secret_file.write_text(SECRET + "\n")
    settings = {"key_name": "meshd", "tenant_id": "00000000-0000-0000-0000-000000000000", "client_id": "meshd",
                "client_secret_file": str(secret_file), "timeout": 0.5, "max_attempts": 2}
    start = time.monotonic()
    with pytest.raises(KMSUnavailableError) as refused:
        azure.AzureKeyVaultProvider(azure.AzureKeyVaultSettings.from_config(
            {**settings, "vault_url": f"https://127.0.0.1:{closed_port()}"}))
    assert time.monotonic() - start < 5  # two attempts, not azure-core's default of ten with back-off
    assert "127.0.0.1" in str(refused.value) and "/keys/meshd" in str(refused.value)
    with silent_port() as port:
        start = time.monotonic()
        with pytest.raises(KMSUnavailableError):
            azure.AzureKeyVaultProvider(azure.AzureKeyVaultSettings.from_config(
                {**settings, "vault_url": f"https://127.0.0.1:{port}"}))
        assert time.monotonic() - start < 5
    assert leaks((str(refused.value) + caplog.text).encode(), [SECRET.encode()]) == []


def test_the_key_id_is_the_versionless_one_and_the_secret_comes_from_its_file(azure: Any, tmp_path: Path) -> None:
    secret_file = tmp_path / "client-secret"
    secret_file.write_text(f"  {SECRET}\n")
    settings = azure.AzureKeyVaultSettings.from_config({
        "vault_url": "https://meshd-eu.vault.azure.net/", "key_name": "eu-west-1", "key_version": VERSION,
        "tenant_id": "t", "client_id": "c", "client_secret_file": str(secret_file)})
    # Keyring files record this: a rotation in Key Vault (a new version) must not make them look foreign.
    assert settings.key_id == "https://meshd-eu.vault.azure.net/keys/eu-west-1"
    assert settings.vault_host == "meshd-eu.vault.azure.net"
    assert settings.client_secret() == SECRET and SECRET not in repr(settings) + str(settings.model_dump())
    secret_file.write_text("\n")
    with pytest.raises(ValueError, match=r"keys\.kms\.settings\.client_secret_file: .* is empty"):
        settings.client_secret()


@pytest.mark.parametrize(("settings", "named"), [
    ({"key_name": "k"}, "keys.kms.settings.vault_url"),
    ({"vault_url": "http://meshd.vault.azure.net", "key_name": "k"}, "keys.kms.settings.vault_url"),
    ({"vault_url": "https://meshd.vault.azure.net/keys/k", "key_name": "k"}, "keys.kms.settings.vault_url"),
    ({"vault_url": "https://meshd.vault.azure.net"}, "keys.kms.settings.key_name"),
    ({"vault_url": "https://meshd.vault.azure.net", "key_name": "https://meshd.vault.azure.net/keys/k"},
     "keys.kms.settings.key_name"),
    ({"vault_url": "https://meshd.vault.azure.net", "key_name": "k", "key_version": "latest"},
     "keys.kms.settings.key_version"),
    ({"vault_url": "https://meshd.vault.azure.net", "key_name": "k", "client_secret": SECRET},
     "keys.kms.settings.client_secret"),
    ({"vault_url": "https://meshd.vault.azure.net", "key_name": "k", "client_secret_file": "/etc/hostname"},
     "keys.kms.settings.client_secret_file"),
    ({"vault_url": "https://meshd.vault.azure.net", "key_name": "k", "tenant_id": "t", "client_id": "c",
      "client_secret_file": "/no/such/secret"}, "keys.kms.settings.client_secret_file"),
    ({"vault_url": "https://meshd.vault.azure.net", "key_name": "k", "max_attempts": 0},
     "keys.kms.settings.max_attempts"),
])
def test_bad_settings_name_the_key_and_not_the_value(azure: Any, settings: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named.replace(".", r"\.")) as err:
        azure.AzureKeyVaultSettings.from_config({**settings, "region": "eu-west-1", "state_dir": "/s",
                                                 "keys_dir": "/s/keys"})
    assert SECRET not in str(err.value) and str(err.value).startswith("azure-keyvault: ")
