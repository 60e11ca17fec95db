"""Real `meshd run` processes on a nats-server with per-region users: encrypted NATS passwords, the CLI,
the federation view, the key service's NATS permissions, and logs free of secrets and key bytes."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import anyio
import nats
import pytest
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from meshd.testing import BUILTIN_PLUGINS, LocalFederation

from .keyleaks import key_material, leaks

REGIONS = ["eu-west-1", "us-east-1", "ap-southeast-1"]
OTHERS = [p for p in BUILTIN_PLUGINS if p != "keys"]


def meshd(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshd", *args], input=stdin if stdin is not None else "",
                          capture_output=True, text=True, timeout=60)


def federation_versions(fed: LocalFederation, observer: str, region: str) -> int | None:
    doc = fed.status(observer) or {}
    for ring in doc.get("keys", {}).get("federation", {}).get(region, {}).get("keyrings", []):
        if ring["purpose"] == "secrets":
            return ring["version"]
    return None


@pytest.fixture
def fed(tmp_path: Path):
    fed = LocalFederation(tmp_path / "fed", regions=REGIONS, config={
        "plugins": {"disabled": OTHERS}, "log": {"level": "debug"},
        "keys": {"check_interval": "0.2s", "announce_interval": "1s"}})
    try:
        fed.start(daemons=False)
        yield fed
    finally:
        fed.stop()


def test_encrypted_nats_passwords_rotation_rewrap_and_no_secret_in_any_log(fed: LocalFederation) -> None:
    passwords = {r: (fed.dir / "secrets" / f"{r}.nats-password").read_text().strip() for r in REGIONS}
    for region in REGIONS:
        out = meshd("secrets", "encrypt", "--config", str(fed.config_path(region)), stdin=passwords[region] + "\n")
        assert out.returncode == 0, out.stderr
        assert passwords[region] not in out.stdout + out.stderr
        config = fed.config_path(region)
        text = re.sub(r"password_file: .*", "password: " + out.stdout.strip(), config.read_text())
        config.write_text(text)
        (fed.dir / "secrets" / f"{region}.nats-password").unlink()  # the plaintext file is gone for good
    for region in REGIONS:
        fed.start_daemon(region, wait=False)
    for region in REGIONS:
        fed.wait_ready(region)  # each one authenticated to nats-server with its decrypted password

    for observer in REGIONS:
        fed.wait_for(lambda o=observer: all(federation_versions(fed, o, r) == 1 for r in REGIONS),
                     what=f"{observer} sees every region's keys")

    eu = str(fed.config_path("eu-west-1"))
    out = meshd("keys", "rotate", "--config", eu, "--purpose", "secrets")
    assert out.returncode == 0, out.stderr
    assert "rotated eu-west-1/secrets to version 2" in out.stdout
    for observer in REGIONS:
        fed.wait_for(lambda o=observer: federation_versions(fed, o, "eu-west-1") == 2,
                     what=f"{observer} sees eu-west-1's rotation")
    out = meshd("keys", "status", "--federation", "--config", str(fed.config_path("us-east-1")))
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines()[3:]}
    assert set(rows) == set(REGIONS) and rows["eu-west-1"][2] == "2" and rows["us-east-1"][2] == "1"
    out = meshd("--lang", "es", "keys", "status", "--config", eu)
    assert out.returncode == 0 and "llaveros de eu-west-1" in out.stdout

    # Refuse what cannot be: exit 2 with the reason.
    out = meshd("keys", "set", "--config", eu, "--purpose", "secrets", "--min-decryption-version", "3")
    assert out.returncode == 2 and "min_decryption_version must be a whole number from 1 to 2" in out.stderr
    out = meshd("keys", "rotate", "--config", eu, "--purpose", "nosuch")
    assert out.returncode == 2 and "there is no nosuch keyring" in out.stderr

    # Rewrap the config, retire version 1, restart: the daemon still decrypts its password.
    out = meshd("keys", "rewrap", "--config", eu, "--file", eu)
    assert out.returncode == 0 and "1 of 1" in out.stdout, out.stderr
    out = meshd("keys", "set", "--config", eu, "--purpose", "secrets", "--min-decryption-version", "2")
    assert out.returncode == 0 and "min_decryption_version 2" in out.stdout, out.stderr
    assert fed.stop_daemon("eu-west-1") == 0
    fed.start_daemon("eu-west-1")
    out = meshd("keys", "rewrap", "--config", eu)
    assert out.returncode == 0 and "no plugin has registered stored ciphertext" in out.stdout

    fed.stop()
    logs = b"".join((fed.logs / f"{r}.log").read_bytes() for r in REGIONS)
    assert b"rotated to version 2" in logs and b"debug" in logs  # the logs are there, at debug level
    for region, password in passwords.items():
        assert password.encode() not in logs, f"{region}'s NATS password is in a log"
        assert base64.b64encode(password.encode())[:-4] not in logs
    material = key_material(fed.state_dir(r) for r in REGIONS)
    assert not leaks(logs, material)


def test_the_key_service_is_for_the_region_alone(fed: LocalFederation) -> None:
    fed.start_daemon("eu-west-1", wait=False)
    fed.start_daemon("us-east-1")
    fed.wait_ready("eu-west-1")
    url = fed.servers[0].url

    def password(region: str) -> str:
        return (fed.dir / "secrets" / f"{region}.nats-password").read_text().strip()

    async def scenario() -> None:
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        own = await nats.connect(url, user="eu-west-1", password=password("eu-west-1"),
                                 inbox_prefix="_INBOX.eu-west-1")
        other = await nats.connect(url, user="us-east-1", password=password("us-east-1"),
                                   inbox_prefix="_INBOX.us-east-1", error_cb=on_error)
        snooped: list[bytes] = []

        async def snoop(msg) -> None:
            snooped.append(msg.data)

        await other.subscribe("meshd-kms.test.eu-west-1.>", cb=snoop)
        await other.subscribe("meshd-kms.>", cb=snoop)
        await other.flush()
        request = json.dumps({"context": {"tenant": "acme"},
                              "plaintext": base64.b64encode(b"eu-only data").decode()}).encode()
        reply = json.loads((await own.request("meshd-kms.test.eu-west-1.encrypt", request, timeout=5)).data)
        assert reply["ok"] and reply["ciphertext"].startswith("meshd:v1:")
        with pytest.raises((NatsTimeout, NoRespondersError, TimeoutError)):
            await other.request("meshd-kms.test.eu-west-1.decrypt", json.dumps(
                {"context": {"tenant": "acme"}, "ciphertext": reply["ciphertext"]}).encode(), timeout=1)
        # us-east-1's own service answers its own user (so the refusal above is the permission, not absence).
        theirs = json.loads((await other.request("meshd-kms.test.us-east-1.encrypt", request, timeout=5)).data)
        assert theirs["ok"]
        await other.flush()
        with anyio.move_on_after(10):
            while len([e for e in errors if "ermissions" in e]) < 3:
                await anyio.sleep(0.05)
        assert snooped == []
        assert sum("ermissions" in e for e in errors) >= 3, errors  # two subscriptions and one publish refused
        await own.close()
        await other.close()

    anyio.run(scenario, backend="asyncio")
