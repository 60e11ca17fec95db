"""What only the ``vault-transit`` provider has: AppRole, Transit key versions, an outage, its settings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from meshd.kms import KMSUnavailableError
from meshd.natsserver import free_port

from .conftest import TRANSIT_KEY, need

CONTEXT = {"region": "eu-west-1", "purpose": "secrets", "key_id": "k-1", "version": "1"}


@pytest.fixture
def transit() -> object:
    need("meshd_kms_vault_transit.devserver")
    return need("meshd_kms_vault_transit")


@pytest.fixture
def root(openbao: Any) -> object:
    hvac = need("hvac")
    return hvac.Client(url=openbao.url, token=openbao.token)


def test_approle_login_with_a_policy_limited_to_the_key(transit: object, root: object, openbao: Any,
                                                         tmp_path: Path) -> None:
    root.sys.enable_auth_method("approle", path="approle-test")
    root.sys.create_or_update_policy("meshd-eu", f'''
        path "transit/encrypt/{TRANSIT_KEY}" {{ capabilities = ["update"] }}
        path "transit/decrypt/{TRANSIT_KEY}" {{ capabilities = ["update"] }}
        path "transit/keys/{TRANSIT_KEY}" {{ capabilities = ["read"] }}''')
    root.auth.approle.create_or_update_approle("meshd-eu", token_policies=["meshd-eu"], mount_point="approle-test")
    role_id = root.auth.approle.read_role_id("meshd-eu", mount_point="approle-test")["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id("meshd-eu", mount_point="approle-test")["data"]["secret_id"]
    secret_file = tmp_path / "secret-id"
    secret_file.write_text(secret_id + "\n")
    provider = transit.VaultTransitProvider(transit.TransitSettings.from_config({
        "url": openbao.url, "key": TRANSIT_KEY, "auth": "approle", "role_id": role_id,
        "secret_id_file": str(secret_file), "approle_mount": "approle-test", "region": "eu-west-1"}))
    key = os.urandom(32)
    assert provider.unwrap(provider.wrap(key, dict(CONTEXT)), dict(CONTEXT)) == key
    assert secret_id not in repr(provider) + str(provider.describe())

    # The policy allows this key only: another key is refused by Vault, reported as unavailable access.
    root.secrets.transit.create_key(name="other")
    with pytest.raises(KMSUnavailableError, match="refused|Forbidden"):
        transit.VaultTransitProvider(transit.TransitSettings.from_config({
            "url": openbao.url, "key": "other", "auth": "approle", "role_id": role_id,
            "secret_id": secret_id}))


def test_a_rotated_transit_key_wraps_with_its_new_version_and_retires_old_ones(
        transit: object, root: object, openbao: Any) -> None:
    root.secrets.transit.create_key(name="rotating")
    settings = transit.TransitSettings.from_config({"url": openbao.url, "key": "rotating", "token": openbao.token})
    provider = transit.VaultTransitProvider(settings)
    key = os.urandom(32)
    old = provider.wrap(key, dict(CONTEXT))
    assert old.startswith(b"vault:v1:")
    root.secrets.transit.rotate_key(name="rotating")
    new = provider.wrap(key, dict(CONTEXT))
    assert new.startswith(b"vault:v2:") and provider.unwrap(old, dict(CONTEXT)) == key
    assert transit.VaultTransitProvider(settings).describe()["key_version"] == "2"
    root.secrets.transit.update_key_configuration(name="rotating", min_decryption_version=2)
    with pytest.raises(ValueError):
        provider.unwrap(old, dict(CONTEXT))
    assert provider.unwrap(new, dict(CONTEXT)) == key


def test_a_stopped_server_is_an_outage_not_a_mismatch(transit: object, tmp_path: Path) -> None:
    server = transit.devserver.OpenBao(tmp_path / "bao").start()
    try:
        server.transit_key(TRANSIT_KEY)
        provider = transit.VaultTransitProvider(transit.TransitSettings.from_config(
            {"url": server.url, "key": TRANSIT_KEY, "token": server.token, "timeout": 2}))
        wrapped = provider.wrap(os.urandom(32), dict(CONTEXT))
    finally:
        server.stop()
    with pytest.raises(KMSUnavailableError):
        provider.check()
    with pytest.raises(KMSUnavailableError) as err:
        provider.unwrap(wrapped, dict(CONTEXT))
    assert server.url in str(err.value) and server.token not in str(err.value)
    with pytest.raises(KMSUnavailableError):  # and at start, the provider says why it cannot open
        transit.VaultTransitProvider(transit.TransitSettings.from_config(
            {"url": f"http://127.0.0.1:{free_port()}", "key": TRANSIT_KEY, "token": "t", "timeout": 2}))


@pytest.mark.parametrize(("settings", "named"), [
    ({"key": "k", "token": "t"}, "keys.kms.settings.url"),
    ({"url": "http://x", "token": "t"}, "keys.kms.settings.key"),
    ({"url": "http://x", "key": "k", "auth": "approle", "secret_id": "s"}, "role_id"),
    ({"url": "http://x", "key": "k", "tokn": "t"}, "keys.kms.settings.tokn"),
    ({"url": "http://x", "key": "k", "ca_cert": "/no/such/ca.pem"}, "ca_cert"),
])
def test_bad_settings_name_the_key_and_not_the_secret(transit: object, settings: dict[str, str],
                                                      named: str) -> None:
    with pytest.raises(ValueError, match=named.replace(".", r"\.")) as err:
        transit.TransitSettings.from_config({**settings, "state_dir": "/s", "keys_dir": "/s/keys"})
    assert "'t'" not in str(err.value) and "'s'" not in str(err.value)
