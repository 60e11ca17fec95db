"""The contract of ``meshd.kms.KMSProvider``, run against every provider that has a real server in tests."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest

from meshd_plugins.keys.errors import KEKError, KeyringError

from ..keys.keyleaks import leaks
from .conftest import ProviderUnderTest

CONTEXT = {"region": "eu-west-1", "purpose": "metering", "key_id": "k-0123456789abcdef", "version": "1"}


def test_wrap_then_unwrap_returns_the_key_and_survives_a_restart(kms: ProviderUnderTest, tmp_path: Path) -> None:
    key = os.urandom(32)
    provider = kms.open("eu-west-1", tmp_path / "a")
    wrapped = provider.wrap(key, dict(CONTEXT))
    assert key not in wrapped
    assert provider.wrap(key, dict(CONTEXT)) != wrapped  # randomized: equal keys do not show as equal
    assert provider.unwrap(wrapped, dict(CONTEXT)) == key
    assert kms.open("eu-west-1", tmp_path / "b").unwrap(wrapped, dict(CONTEXT)) == key


@pytest.mark.parametrize("field", ["region", "purpose", "key_id", "version"])
def test_a_wrapped_key_moved_to_another_context_does_not_unwrap(kms: ProviderUnderTest, tmp_path: Path,
                                                                  field: str) -> None:
    provider = kms.open("eu-west-1", tmp_path)
    wrapped = provider.wrap(os.urandom(32), dict(CONTEXT))
    moved = {**CONTEXT, field: CONTEXT[field] + "x" if field != "region" else "us-east-1"}
    with pytest.raises(ValueError):
        provider.unwrap(wrapped, moved)
    extra = {**CONTEXT, "tenant": "acme"}
    with pytest.raises(ValueError):
        provider.unwrap(wrapped, extra)


def test_a_damaged_wrapped_key_does_not_unwrap(kms: ProviderUnderTest, tmp_path: Path) -> None:
    provider = kms.open("eu-west-1", tmp_path)
    wrapped = bytearray(provider.wrap(os.urandom(32), dict(CONTEXT)))
    wrapped[-3] ^= 0x01
    with pytest.raises(ValueError):
        provider.unwrap(bytes(wrapped), dict(CONTEXT))
    with pytest.raises(ValueError):
        provider.unwrap(b"", dict(CONTEXT))


@pytest.mark.parametrize("field", ["region", "purpose", "key_id"])
def test_no_wrap_without_its_context(kms: ProviderUnderTest, tmp_path: Path, field: str) -> None:
    provider = kms.open("eu-west-1", tmp_path)
    with pytest.raises(ValueError, match=field):
        provider.wrap(os.urandom(32), {k: v for k, v in CONTEXT.items() if k != field})


def test_describe_names_the_kek_and_no_credential(kms: ProviderUnderTest, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    provider = kms.open("eu-west-1", tmp_path)
    key = os.urandom(32)
    assert provider.unwrap(provider.wrap(key, dict(CONTEXT)), dict(CONTEXT)) == key
    provider.check()  # the KMS answers: no exception
    described = provider.describe()
    assert described["provider"] == kms.name and described.get("kek_id")
    shown = (json.dumps(described) + repr(provider) + caplog.text).encode()
    assert leaks(shown, [key, *(secret.encode() for secret in kms.secrets)]) == []


def test_keyrings_on_the_provider_reopen_and_refuse_another_region(kms: ProviderUnderTest, tmp_path: Path) -> None:
    manager = kms.manager("eu-west-1", tmp_path / "eu")
    token = manager.keyring("metering").encrypt(b"usage 42", {"tenant": "acme"})
    described = json.loads(manager.path_of("metering").read_text())["kek"]
    assert described["provider"] == kms.name

    again = kms.manager("eu-west-1", tmp_path / "eu")  # a restart: the keyring is unwrapped anew
    assert again.keyring("metering").decrypt(token, {"tenant": "acme"}) == b"usage 42"

    # The keyring file copied to another region: refused as it is, and unreadable once relabelled.
    other = kms.manager("us-east-1", tmp_path / "us")
    other.keys_dir.mkdir(parents=True)
    shutil.copy(manager.path_of("metering"), other.path_of("metering"))
    with pytest.raises(KeyringError):
        other.keyring("metering")
    doc = json.loads(other.path_of("metering").read_text())
    doc["region"] = "us-east-1"
    other.path_of("metering").write_text(json.dumps(doc))
    with pytest.raises(KEKError, match="cannot unwrap"):
        kms.manager("us-east-1", tmp_path / "us").keyring("metering")
