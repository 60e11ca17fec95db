"""What only the ``kmip`` provider has: its settings, the key's state on the server, an outage, the server's name."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from meshd.kms import KMSUnavailableError

from ..keys.keyleaks import leaks
from .conftest import KmipServerUnderTest, kmip_aes_key, need

CONTEXT = {"region": "eu-west-1", "purpose": "secrets", "key_id": "k-1", "version": "1"}


@pytest.fixture
def kmip() -> Any:
    need("meshd_kms_kmip.provider")
    return need("meshd_kms_kmip")


def _open(kmip: Any, settings: dict[str, Any]) -> Any:
    return kmip.KmipProvider(kmip.KmipSettings.from_config(settings))


def _new_key(server: Any, length: int = 256, activate: bool = True) -> str:
    """A key of another kind than the session's, made through PyKMIP's client like an operator would."""
    client_module, enums = need("kmip.pie.client"), need("kmip.core.enums")
    pki = server.pki
    client = client_module.ProxyKmipClient(hostname="127.0.0.1", port=server.port, cert=str(pki.client_cert),
                                           key=str(pki.client_key), ca=str(pki.ca), config_file=os.devnull)
    with client:
        uid = client.create(enums.CryptographicAlgorithm.AES, length, cryptographic_usage_mask=[
            enums.CryptographicUsageMask.ENCRYPT, enums.CryptographicUsageMask.DECRYPT])
        if activate:
            client.activate(uid)
    return str(uid)


def test_the_plugin_imports_pykmip_only_when_the_provider_is_asked_for(kmip: Any) -> None:
    # Every daemon and CLI run loads every installed plugin: most never use this provider.
    code = "import sys, meshd_kms_kmip; assert not [m for m in sys.modules if m.split('.')[0] == 'kmip'], 'kmip'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_wrap_unwraps_with_its_own_kmip_key_only(kmip: Any, pykmip_server: KmipServerUnderTest) -> None:
    provider = _open(kmip, pykmip_server.settings(host="localhost"))  # the certificate names both
    other = _open(kmip, pykmip_server.settings(key_id=_new_key(pykmip_server.server)))
    key = os.urandom(32)
    wrapped = provider.wrap(key, dict(CONTEXT))
    assert provider.unwrap(wrapped, dict(CONTEXT)) == key
    with pytest.raises(ValueError, match="does not unwrap"):
        other.unwrap(wrapped, dict(CONTEXT))
    # The one-time key sealed by the server is at 25..73: a flip there fails the server's padding check
    # (PyKMIP answers General Failure) or gives another key; both are a mismatch, the server being up.
    sealed_otk_flipped = wrapped[:40] + bytes([wrapped[40] ^ 1]) + wrapped[41:]
    for damaged in (sealed_otk_flipped, b"MKMIP1", wrapped[:40], b"MKMIP2" + wrapped[6:], wrapped[:-1]):
        with pytest.raises(ValueError):
            provider.unwrap(damaged, dict(CONTEXT))


def test_a_missing_inactive_or_other_key_refuses_to_open(kmip: Any, pykmip_server: KmipServerUnderTest) -> None:
    with pytest.raises(KMSUnavailableError, match="key 4242: not found"):
        _open(kmip, pykmip_server.settings(key_id="4242"))
    with pytest.raises(KMSUnavailableError, match="PRE_ACTIVE, not Active"):
        _open(kmip, pykmip_server.settings(key_id=_new_key(pykmip_server.server, activate=False)))
    with pytest.raises(ValueError, match=r"keys\.kms\.settings\.key_id: .* not an AES-256 key"):
        _open(kmip, pykmip_server.settings(key_id=_new_key(pykmip_server.server, length=128)))


def test_a_password_credential_shows_nowhere(kmip: Any, pykmip_server: KmipServerUnderTest, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    # PyKMIP's server without an auth plugin accepts (and ignores) the credential: what is tested here is
    # that it goes with every request without reaching a log, describe() or repr() on the way.
    caplog.set_level(logging.DEBUG)
    password = "kmip-test-password-0123456789"
    password_file = tmp_path / "kmip-password"
    password_file.write_text(password + "\n")
    provider = _open(kmip, pykmip_server.settings(username="meshd-eu", password_file=str(password_file)))
    key = os.urandom(32)
    wrapped = provider.wrap(key, dict(CONTEXT))
    assert provider.unwrap(wrapped, dict(CONTEXT)) == key
    provider.check()
    assert logging.getLogger("kmip").getEffectiveLevel() >= logging.INFO
    shown = (json.dumps(provider.describe()) + repr(provider) + caplog.text).encode()
    client_key = pykmip_server.server.pki.client_key.read_text()
    assert leaks(shown, [key, password.encode(), client_key.encode()]) == []
    assert provider.describe() == {"provider": "kmip", "kek_id": pykmip_server.key_id, "host": "127.0.0.1",
                                   "port": str(pykmip_server.server.port)}


def test_a_stopped_server_is_an_outage_not_a_mismatch(kmip: Any, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    devserver = need("meshd_kms_kmip.devserver")
    caplog.set_level(logging.DEBUG)
    server = devserver.PyKmipServer(tmp_path / "kmip").start()
    try:
        settings = KmipServerUnderTest(server, kmip_aes_key(server)).settings(timeout=2)
        provider = _open(kmip, settings)
        key = os.urandom(32)
        wrapped = provider.wrap(key, dict(CONTEXT))
    finally:
        server.stop()
    with pytest.raises(KMSUnavailableError):
        provider.check()
    with pytest.raises(KMSUnavailableError):
        provider.wrap(os.urandom(32), dict(CONTEXT))
    with pytest.raises(KMSUnavailableError) as err:
        provider.unwrap(wrapped, dict(CONTEXT))
    assert f"127.0.0.1:{server.port}" in str(err.value)
    with pytest.raises(KMSUnavailableError):  # and at start, the provider says why it cannot open
        _open(kmip, settings)
    assert leaks((str(err.value) + caplog.text).encode(), [key, server.pki.client_key.read_bytes()]) == []

    # Back on the same port with the same database: the same key, and the wrap made before unwraps again.
    server.start()
    try:
        assert provider.unwrap(wrapped, dict(CONTEXT)) == key
        provider.check()
    finally:
        server.stop()


def test_a_server_whose_certificate_does_not_name_the_host_is_refused(kmip: Any, tmp_path: Path) -> None:
    devserver = need("meshd_kms_kmip.devserver")
    # Chained to the right CA, but issued to another name: PyKMIP's client alone would accept it.
    pki = devserver.make_pki(tmp_path / "pki", server_names=("kmip.other.example",))
    server = devserver.PyKmipServer(tmp_path / "kmip", pki=pki, server_hostname="kmip.other.example").start()
    try:
        settings = KmipServerUnderTest(server, kmip_aes_key(server)).settings()
        with pytest.raises(KMSUnavailableError, match="certificate does not name 127.0.0.1"):
            _open(kmip, settings)
    finally:
        server.stop()


@pytest.mark.parametrize(("name", "sans", "ok"), [
    ("127.0.0.1", [("IP Address", "127.0.0.1")], True),
    ("127.0.0.1", [("DNS", "127.0.0.1")], False),
    ("::1", [("IP Address", "0:0:0:0:0:0:0:1\n")], True),
    ("kmip.eu.internal", [("DNS", "KMIP.eu.internal")], True),
    ("kmip.eu.internal", [("DNS", "*.eu.internal")], True),
    ("a.kmip.eu.internal", [("DNS", "*.eu.internal")], False),
    ("eu.internal", [("DNS", "*.eu.internal")], False),
    ("kmip.eu.internal", [("DNS", "kmip.us.internal"), ("IP Address", "10.0.0.1")], False),
])
def test_server_names(kmip: Any, name: str, sans: list[tuple[str, str]], ok: bool) -> None:
    provider_module = need("meshd_kms_kmip.provider")
    assert provider_module._names_host({"subjectAltName": tuple(sans)}, name) is ok


@pytest.mark.parametrize(("settings", "named"), [
    ({"key_id": "1"}, "keys.kms.settings.host"),
    ({"host": "kmip"}, "keys.kms.settings.key_id"),
    ({"host": "kmip", "key_id": "1", "port": 0}, "keys.kms.settings.port"),
    ({"host": "kmip", "key_id": "1", "cert_file": "/no/such/cert.pem"}, "keys.kms.settings.cert_file"),
    ({"host": "kmip", "key_id": "1", "ca_file": "/no/such/ca.pem"}, "keys.kms.settings.ca_file"),
    ({"host": "kmip", "key_id": "1", "kmip_version": "1.0"}, "keys.kms.settings.kmip_version"),
    ({"host": "kmip", "key_id": "1", "password": "hunter2-secret"}, "keys.kms.settings.password"),
    ({"host": "kmip", "key_id": "1", "username": "meshd"}, "username and password_file"),
])
def test_bad_settings_name_the_key_and_not_the_secret(kmip: Any, tmp_path: Path, settings: dict[str, Any],
                                                      named: str) -> None:
    pem = tmp_path / "x.pem"
    pem.write_text("-")
    files = {"cert_file": str(pem), "key_file": str(pem), "ca_file": str(pem)}
    with pytest.raises(ValueError, match=named.replace(".", r"\.")) as err:
        kmip.KmipSettings.from_config({**files, **settings, "state_dir": "/s", "keys_dir": "/s/keys",
                                       "region": "eu-west-1"})
    assert "hunter2" not in str(err.value)


def test_an_unreadable_password_file_is_named(kmip: Any, tmp_path: Path) -> None:
    pem = tmp_path / "x.pem"
    pem.write_text("-")
    secret = tmp_path / "password"
    secret.write_text("s")
    settings = kmip.KmipSettings.from_config({"host": "kmip", "key_id": "1", "cert_file": str(pem),
                                              "key_file": str(pem), "ca_file": str(pem), "username": "u",
                                              "password_file": str(secret)})
    secret.unlink()
    with pytest.raises(ValueError, match=r"keys\.kms\.settings\.password_file"):
        settings.resolved_password()
