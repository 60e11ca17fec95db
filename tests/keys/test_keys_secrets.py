"""Encrypted config secrets: ``meshd secrets encrypt``, the decrypt hook, validation and ``keys rewrap --file``."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest

from meshd.cli import main
from meshd.plugins import Hooks
from meshd.testing import write_federation
from meshd_plugins.keys.manager import KeyManager
from meshd_plugins.keys.settings import KeysConfig

SECRET = "nats-pass-Zq8#only-in-memory"


@pytest.fixture
def configs(tmp_path: Path) -> dict[str, Path]:
    return write_federation(tmp_path, ["eu-west-1", "eu-central-1"], "nats://127.0.0.1:4222")


def encrypt(config: Path, plaintext: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
            *args: str) -> str:
    monkeypatch.setattr(sys, "stdin", io.StringIO(plaintext))
    code = main(["secrets", "encrypt", "--config", str(config), *args])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out.strip()


def use_as_password(config: Path, line: str) -> None:
    text = config.read_text()
    text = re.sub(r"(?m)^nats:\n(  servers:\n  - \S+\n)", lambda m: "nats:\n" + m.group(1) +
                  f"  user: u\n  password: {line}\n", text)
    assert line in text
    config.write_text(text)


def state_of(config: Path, region: str) -> Path:
    return config.parent / "state" / region


def test_encrypt_prints_a_line_that_decrypts_only_in_its_region(configs, monkeypatch, capsys) -> None:
    eu, de = configs["eu-west-1"], configs["eu-central-1"]
    line = encrypt(eu, SECRET + "\n", monkeypatch, capsys)  # the newline of `echo` is not part of it
    assert re.fullmatch(r"!encrypted meshd:v1:[A-Za-z0-9+/]+=*", line)
    assert SECRET not in line
    use_as_password(eu, line)
    assert main(["check-config", str(eu)]) == 0

    hooks = Hooks.load()
    config = hooks.load_config(eu)
    assert hooks.decrypt_secret(config, config.daemon.nats.password) == SECRET
    from meshd.logs import scrub

    assert scrub(f"connect with {SECRET}") == "connect with ***"  # registered with the log scrubber

    # The same line in another region's config does not decrypt there (its own keyring, its own KEK).
    encrypt(de, "something else", monkeypatch, capsys)
    use_as_password(de, line)
    capsys.readouterr()
    assert main(["check-config", str(de)]) == 2
    err = capsys.readouterr().err
    assert "nats.password" in err and "does not decrypt under keyring eu-central-1/secrets" in err
    assert re.search(rf"{re.escape(str(de))}:\d+: nats.password", err)


def test_plaintext_never_comes_from_argv_and_empty_input_is_refused(configs, monkeypatch, capsys) -> None:
    eu = configs["eu-west-1"]
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(SystemExit) as exit_:
        main(["secrets", "encrypt", "--config", str(eu), SECRET])
    assert exit_.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err
    assert main(["secrets", "encrypt", "--config", str(eu)]) == 2
    assert "empty" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))
    assert main(["--lang", "fr", "secrets", "encrypt", "--config", str(eu)]) == 2
    assert "le secret est vide" in capsys.readouterr().err


def test_tampered_or_foreign_values_are_config_errors(configs, monkeypatch, capsys) -> None:
    eu = configs["eu-west-1"]
    line = encrypt(eu, SECRET, monkeypatch, capsys)
    payload = line.split(":", 2)[2]
    flipped = payload[:5] + ("A" if payload[5] != "A" else "B") + payload[6:]
    for bad, needle in ((f"!encrypted meshd:v1:{flipped}", "was altered"),
                        ("!encrypted meshd:v1:not*base64", "not canonical base64"),
                        ("!encrypted meshd:v9:" + payload, "key version 9 does not exist"),
                        ("!encrypted vault:v1:abcd", "not a meshd ciphertext")):
        text = eu.read_text()
        use_as_password(eu, bad)
        assert main(["check-config", str(eu)]) == 2
        assert needle in capsys.readouterr().err
        eu.write_text(text)


def test_a_value_from_another_keyring_of_the_region_is_not_a_config_secret(configs, monkeypatch, capsys) -> None:
    eu = configs["eu-west-1"]
    encrypt(eu, "x", monkeypatch, capsys)
    manager = KeyManager(region="eu-west-1", state_dir=state_of(eu, "eu-west-1"), cfg=KeysConfig())
    foreign = manager.keyring("metering").encrypt(SECRET.encode(), {"use": "config-secret"})
    use_as_password(eu, f"!encrypted {foreign}")
    assert main(["check-config", str(eu)]) == 2
    assert "eu-west-1/secrets" in capsys.readouterr().err


def test_rotate_rewrap_then_retire(configs, monkeypatch, capsys) -> None:
    """Rotate; rewrap the config file; raise min_decryption_version: the file still works, an old copy does not."""
    eu = configs["eu-west-1"]
    line = encrypt(eu, SECRET, monkeypatch, capsys)
    use_as_password(eu, line)
    other_file = eu.parent / "alerts-secrets.yaml"
    other_file.write_text(f"# receivers\nslack:\n  url: {encrypt(eu, 'https://hooks/T0K3N', monkeypatch, capsys)}\n"
                          f"pagerduty: '{encrypt(eu, 'pd-key', monkeypatch, capsys)}'\n")
    other_file.chmod(0o640)
    old_copy = eu.read_text()
    ring = KeyManager(region="eu-west-1", state_dir=state_of(eu, "eu-west-1"), cfg=KeysConfig()).keyring("secrets")
    ring.rotate()

    assert main(["keys", "rewrap", "--config", str(eu), "--file", str(eu), "--file", str(other_file)]) == 0
    out = capsys.readouterr().out
    assert f"{eu}: 1 of 1 encrypted value(s) moved to key version 2" in out
    assert f"{other_file}: 2 of 2" in out
    assert "meshd:v2:" in eu.read_text() and "meshd:v1:" not in eu.read_text()
    assert "# receivers" in other_file.read_text() and other_file.stat().st_mode & 0o777 == 0o640
    assert main(["keys", "rewrap", "--config", str(eu), "--file", str(eu)]) == 0
    assert "0 of 1" in capsys.readouterr().out  # idempotent

    ring.set_min_versions(decryption=2)
    assert main(["check-config", str(eu)]) == 0
    hooks = Hooks.load()
    config = hooks.load_config(eu)
    assert hooks.decrypt_secret(config, config.daemon.nats.password) == SECRET

    eu.write_text(old_copy)
    assert main(["check-config", str(eu)]) == 2
    err = capsys.readouterr().err
    assert "key version 1 of keyring eu-west-1/secrets is retired" in err and "nats.password" in err
    # rewrap cannot resurrect it and leaves the file as it was
    assert main(["keys", "rewrap", "--config", str(eu), "--file", str(eu)]) == 2
    assert "left unchanged" in capsys.readouterr().err and eu.read_text() == old_copy


def test_local_status_without_a_daemon(configs, monkeypatch, capsys) -> None:
    eu = configs["eu-west-1"]
    encrypt(eu, SECRET, monkeypatch, capsys)
    assert main(["keys", "status", "--config", str(eu), "--local"]) == 0
    out = capsys.readouterr().out
    assert "secrets" in out and "local" in out
    assert main(["keys", "status", "--config", str(eu), "--local", "--json"]) == 0
    import json

    doc = json.loads(capsys.readouterr().out)
    assert doc["keyrings"][0]["purpose"] == "secrets" and doc["keyrings"][0]["version"] == 1
    # Without --local it needs the daemon, and says so (exit 1: runtime failure).
    assert main(["keys", "status", "--config", str(eu)]) == 1
    assert "cannot reach the meshd daemon of eu-west-1 at http://127.0.0.1:" in capsys.readouterr().err
