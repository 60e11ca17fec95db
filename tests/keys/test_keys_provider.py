"""A KMS provider from another plugin, through ``meshd_kms_provider``: keyrings and config secrets use it."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from meshd import KMSProvider, hookimpl
from meshd.config import ConfigError
from meshd.plugins import Hooks
from meshd.testing import write_federation
from meshd_plugins.keys.configsecrets import encrypt_config_value


class VaultLikeProvider(KMSProvider):
    """Stands in for a remote KMS: the KEK lives in the provider, derived from its settings."""

    name = "vault-like"

    def __init__(self, settings: dict[str, Any]):
        self.calls: list[str] = []
        self.settings = settings
        self._aead = AESGCM(hashlib.sha256(settings["seed"].encode()).digest())

    def wrap(self, plaintext_key: bytes, context: dict[str, str]) -> bytes:
        self.calls.append("wrap")
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plaintext_key, repr(sorted(context.items())).encode())

    def unwrap(self, wrapped_key: bytes, context: dict[str, str]) -> bytes:
        self.calls.append("unwrap")
        try:
            return self._aead.decrypt(wrapped_key[:12], wrapped_key[12:], repr(sorted(context.items())).encode())
        except InvalidTag:
            raise ValueError("vault-like: permission denied or wrong context") from None

    def describe(self) -> dict[str, str]:
        return {"provider": self.name, "kek_id": "transit/meshd-" + self.settings["region"]}


class VaultLikePlugin:
    def __init__(self) -> None:
        self.providers: list[VaultLikeProvider] = []

    @hookimpl
    def meshd_kms_provider(self, name: str, config: dict[str, Any]) -> KMSProvider | None:
        if name != "vault-like":
            return None
        provider = VaultLikeProvider(config)
        self.providers.append(provider)
        return provider


def use_provider(config: Path, **settings: Any) -> None:
    data = yaml.safe_load(config.read_text())
    data["keys"] = {"kms": {"provider": "vault-like", "settings": settings}}
    config.write_text(yaml.safe_dump(data))


def test_a_provider_plugin_wraps_keyrings_and_config_secrets(tmp_path: Path) -> None:
    config_path = write_federation(tmp_path, ["eu-west-1"], "nats://127.0.0.1:4222")["eu-west-1"]
    use_provider(config_path, seed="s3")
    hooks = Hooks.load(extra=[("vaultlike", VaultLikePlugin())])
    config = hooks.load_config(config_path)
    keys = hooks.pm.get_plugin("keys")
    ring = keys.manager_for(config, hooks).keyring("secrets")
    line = encrypt_config_value(ring, "pw-from-vault")
    vault: VaultLikePlugin = hooks.pm.get_plugin("vaultlike")
    settings = vault.providers[0].settings
    assert settings["seed"] == "s3" and settings["region"] == "eu-west-1" and settings["keys_dir"].endswith("keys")
    assert not (Path(settings["keys_dir"]) / "kek").exists()  # no local KEK was made
    assert '"provider": "vault-like"' in (Path(settings["keys_dir"]) / "secrets.json").read_text()

    text = config_path.read_text().replace("nats:\n", f"nats:\n  user: u\n  password: {line}\n", 1)
    config_path.write_text(text)
    fresh = Hooks.load(extra=[("vaultlike", VaultLikePlugin())])
    loaded = fresh.load_config(config_path)  # validation decrypts through the provider
    assert fresh.decrypt_secret(loaded, loaded.daemon.nats.password) == "pw-from-vault"
    assert "unwrap" in fresh.pm.get_plugin("vaultlike").providers[0].calls

    # The same keyring with the provider's key changed: a clear config error, not a wrong plaintext.
    use_provider_text = re.sub(r"seed: s3", "seed: other", config_path.read_text())
    config_path.write_text(use_provider_text)
    with pytest.raises(ConfigError) as err:
        Hooks.load(extra=[("vaultlike", VaultLikePlugin())]).load_config(config_path)
    message = str(err.value.issues[0])
    assert "cannot unwrap version 1 of keyring eu-west-1/secrets" in message and "vault-like" in message


def test_an_unknown_provider_is_named(tmp_path: Path) -> None:
    config_path = write_federation(tmp_path, ["eu-west-1"], "nats://127.0.0.1:4222")["eu-west-1"]
    use_provider(config_path, seed="x")
    hooks = Hooks.load()  # no plugin offers "vault-like"
    config = hooks.load_config(config_path)
    with pytest.raises(Exception) as err:
        hooks.pm.get_plugin("keys").manager_for(config, hooks).keyring("metering")
    assert "no installed plugin provides the KMS provider 'vault-like'" in str(err.value)
