"""The key-encryption key: refused when exposed, never silently replaced, clear errors for every problem."""

from __future__ import annotations

import base64
import io
import os
import sys
from pathlib import Path

import pytest

from meshd.cli import main
from meshd.testing import write_federation
from meshd_plugins.keys import KEKError
from meshd_plugins.keys.kek import read_kek


def no_key_bytes_in(message: str, kek: Path) -> bool:
    raw = kek.read_bytes().strip()
    key = base64.b64decode(raw)
    return raw.decode() not in message and key.hex() not in message


def test_a_fresh_region_gets_a_private_kek(make_manager) -> None:
    manager = make_manager()
    manager.keyring("metering")
    kek = manager.keys_dir / "kek"
    assert kek.stat().st_mode & 0o777 == 0o600
    assert len(read_kek(kek)) == 32
    assert manager.provider.describe()["provider"] == "local"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o601, 0o610])
def test_a_kek_others_can_access_is_refused(make_manager, mode: int) -> None:
    make_manager().keyring("metering")
    kek = make_manager().keys_dir / "kek"
    kek.chmod(mode)
    with pytest.raises(KEKError) as err:
        make_manager().keyring("metering")
    message = str(err.value)
    assert err.value.code == "kek_permissions"
    assert str(kek) in message and f"{mode:04o}" in message and "chmod 600" in message
    assert no_key_bytes_in(message, kek)


def test_a_missing_kek_is_not_recreated_over_existing_keyrings(make_manager) -> None:
    manager = make_manager()
    ring = manager.keyring("metering")
    text = ring.encrypt(b"x")
    (manager.keys_dir / "kek").unlink()
    with pytest.raises(KEKError) as err:
        make_manager().keyring("metering")
    assert err.value.code == "kek_missing"
    assert "restore" in str(err.value) and str(manager.keys_dir) in str(err.value)
    assert not (manager.keys_dir / "kek").exists()
    assert ring.decrypt(text) == b"x"  # the running process still has its keys


def test_another_kek_is_named_not_silently_used(make_manager) -> None:
    manager = make_manager()
    manager.keyring("metering")
    kek = manager.keys_dir / "kek"
    kek.write_bytes(base64.b64encode(os.urandom(32)) + b"\n")
    with pytest.raises(KEKError) as err:
        make_manager().keyring("metering")
    assert err.value.code == "kek_mismatch"
    assert "eu-west-1/metering" in str(err.value)


@pytest.mark.parametrize("content", [b"", b"short", b"A" * 44, base64.b64encode(os.urandom(31)), os.urandom(33)],
                         ids=["empty", "short", "44-As", "base64-of-31-bytes", "33-raw-bytes"])
def test_a_malformed_kek_is_named(make_manager, content: bytes) -> None:
    manager = make_manager()
    manager.keys_dir.mkdir(parents=True)
    kek = manager.keys_dir / "kek"
    kek.write_bytes(content)
    kek.chmod(0o600)
    with pytest.raises(KEKError) as err:
        manager.keyring("metering")
    assert err.value.code == "kek_invalid" and str(kek) in str(err.value)


def test_a_raw_32_byte_kek_is_accepted(make_manager) -> None:
    manager = make_manager()
    manager.keys_dir.mkdir(parents=True)
    kek = manager.keys_dir / "kek"
    kek.write_bytes(os.urandom(32))
    kek.chmod(0o600)
    assert manager.keyring("metering").decrypt(manager.keyring("metering").encrypt(b"x")) == b"x"


def test_systemd_credential(make_manager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "meshd-kek").write_bytes(base64.b64encode(os.urandom(32)))
    (creds / "meshd-kek").chmod(0o400)
    settings = {"kms": {"kek_credential": "meshd-kek"}}
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(KEKError) as err:
        make_manager(**settings).keyring("metering")
    assert err.value.code == "credential_no_dir" and "LoadCredential=" in str(err.value)

    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    manager = make_manager(**settings)
    ring = manager.keyring("metering")
    assert ring.decrypt(ring.encrypt(b"x")) == b"x"
    assert manager.provider.describe()["source"] == "credential meshd-kek"
    assert not (manager.keys_dir / "kek").exists()  # never falls back to a file

    (creds / "meshd-kek").chmod(0o444)
    with pytest.raises(KEKError) as err:
        make_manager(**settings).keyring("metering")
    assert err.value.code == "kek_permissions"
    (creds / "meshd-kek").unlink()
    with pytest.raises(KEKError) as err:
        make_manager(**settings).keyring("metering")
    assert err.value.code == "kek_not_found"  # a credential is never created


def test_create_kek_false_requires_an_existing_kek(make_manager) -> None:
    with pytest.raises(KEKError) as err:
        make_manager(kms={"create_kek": False}).keyring("metering")
    assert err.value.code == "kek_not_found"


def test_check_config_exits_2_naming_an_exposed_or_missing_kek(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    configs = write_federation(tmp_path, ["eu-west-1"], "nats://127.0.0.1:4222")
    config = configs["eu-west-1"]
    assert main(["secrets", "encrypt", "--config", str(config)]) == 2  # empty stdin: nothing to encrypt
    capsys.readouterr()
    state = config.parent / "state" / "eu-west-1"
    # A keyring and its KEK, made as `meshd secrets encrypt` would.
    from meshd_plugins.keys.manager import KeyManager
    from meshd_plugins.keys.settings import KeysConfig

    KeyManager(region="eu-west-1", state_dir=state, cfg=KeysConfig()).keyring("secrets")
    assert main(["check-config", str(config)]) == 0
    kek = state / "keys" / "kek"
    kek.chmod(0o644)
    assert main(["check-config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{kek} has mode 0644" in err and "chmod 600" in err
    assert main(["--lang", "de", "check-config", str(config)]) == 2
    kek.unlink()
    assert main(["check-config", str(config)]) == 2
    assert "is missing, but keyrings wrapped by it exist" in capsys.readouterr().err
