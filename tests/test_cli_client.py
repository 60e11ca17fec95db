"""The CLI's way to the daemon: no proxy, loopback only, which config, and people-worded failures."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from meshd import configpath
from meshd.cli import main
from meshd.client import DaemonClient, DaemonUnreachable, is_loopback
from meshd.config import load_config
from meshd.testing import LocalFederation, raw_http, wait_for, write_federation


class RecordingListener:
    """A loopback TCP listener that records every connection and what it was sent.

    ``answer`` is sent back after the first bytes arrive (``None``: say nothing and keep the connection).
    """

    def __init__(self, answer: bytes | None = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"):
        self.answer = answer
        self.connections = 0
        self.received = b""
        self._held: list[socket.socket] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.settimeout(2)
            try:
                self.received += conn.recv(65536)
            except OSError:
                pass
            if self.answer is None:
                self._held.append(conn)
                continue
            try:
                conn.sendall(self.answer)
            except OSError:
                pass
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for conn in self._held:
            conn.close()
        self._sock.close()


@pytest.fixture
def listener() -> Iterator[RecordingListener]:
    made = RecordingListener()
    yield made
    made.close()


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    with LocalFederation(tmp_path_factory.mktemp("fed"), regions=["eu-west-1"]) as federation:
        yield federation


# ---------------------------------------------------------------- a real daemon


def test_the_cli_ignores_http_proxy_for_the_local_daemon(fed: LocalFederation, listener: RecordingListener,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, listener.url)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    # The control: urllib's default handlers (read from the environment now) hand a loopback request to the proxy.
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.build_opener().open(f"http://127.0.0.1:{fed.http_ports['eu-west-1']}/status", timeout=5)
    wait_for(lambda: listener.connections == 1, 5, "the control request at the proxy")
    assert b"/status" in listener.received

    config = str(fed.config_path("eu-west-1"))
    reloads = fed.metric("eu-west-1", "meshd_config_reloads_total", result="ok")
    assert main(["status", "--config", config, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["region"] == "eu-west-1"
    assert main(["reload", "--config", config]) == 0  # an admin call: the token goes with it
    assert fed.metric("eu-west-1", "meshd_config_reloads_total", result="ok") == reloads + 1
    assert listener.connections == 1 and b"Authorization" not in listener.received


def test_meshd_config_names_the_config_when_config_is_not_given(fed: LocalFederation,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MESHD_CONFIG", str(fed.config_path("eu-west-1")))
    monkeypatch.setattr(configpath, "SYSTEM_DIR", Path("/nonexistent"))
    assert main(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["region"] == "eu-west-1"
    assert main(["health", "--json"]) == 0  # a plugin's command, whose parser said --config was required
    assert "status" in json.loads(capsys.readouterr().out)


def test_a_real_daemon_refuses_bad_requests_and_keeps_serving(fed: LocalFederation) -> None:
    port = fed.http_ports["eu-west-1"]
    token = (fed.state_dir("eu-west-1") / "admin.token").read_text().strip().encode()
    bad = {
        400: b"NOT HTTP AT ALL\r\n\r\n",
        411: b"POST /v1/reload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token
             + b"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        413: b"POST /v1/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000000\r\n\r\n",
        431: b"GET /status HTTP/1.1\r\nHost: x\r\n" + b"X-Bomb: y\r\n" * 5000 + b"\r\n",
    }
    reloads = fed.metric("eu-west-1", "meshd_config_reloads_total", result="ok")
    for status, request in bad.items():
        answer = raw_http(port, request)
        assert answer.startswith(b"HTTP/1.1 %d " % status), answer[:200]
        assert b"Traceback" not in answer and b"h11" not in answer
        assert fed.metric("eu-west-1", "meshd_http_requests_rejected_total", status=str(status)) == 1
    assert fed.metric("eu-west-1", "meshd_config_reloads_total", result="ok") == reloads  # the chunked POST ran nothing
    assert fed.status("eu-west-1")["state"] == "ready"


# ---------------------------------------------------------------- no daemon


@pytest.fixture
def configs(tmp_path: Path) -> dict[str, Path]:
    return write_federation(tmp_path, ["eu-west-1", "us-east-1"], "nats://127.0.0.1:4222")


def set_http(path: Path, **http: object) -> None:
    data = yaml.safe_load(path.read_text())
    data["http"] = http
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.mark.parametrize("listen", ["192.0.2.10", "meshd.example.com", "2001:db8::1"])
def test_a_non_loopback_admin_url_is_refused(configs: dict[str, Path], listen: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = configs["eu-west-1"]
    set_http(path, listen=listen, port=7420)
    assert main(["reload", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "refusing to send the admin token" in err and listen in err and str(path) in err
    assert main(["status", "--config", str(path)]) == 2  # nor anything else over plain HTTP off the host


@pytest.mark.parametrize("listen", ["127.0.0.1", "0.0.0.0", "localhost"])
def test_loopback_and_any_address_are_reached_on_loopback(configs: dict[str, Path], listen: str,
                                                          listener: RecordingListener) -> None:
    path = configs["eu-west-1"]
    set_http(path, listen=listen, port=listener.port)
    status, _ = DaemonClient(load_config(path)).request("GET", "/status")
    assert status == 502 and listener.connections == 1  # the listener's own answer: it was reached directly


def test_what_counts_as_loopback() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.8.9.10", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("10.0.0.1", "0.0.0.0", "::", "fe80::1", "localhost.evil.example", ""))


def test_an_absent_daemon_is_explained_in_words_and_in_the_users_language(
        configs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    path = configs["eu-west-1"]
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]  # nothing listens once it is closed
    set_http(path, port=port)
    assert main(["status", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (f"cannot reach the meshd daemon of eu-west-1 at http://127.0.0.1:{port}: "
                           "connection refused (is it running?)")
    assert main(["--lang", "fr", "status", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"impossible de joindre le démon meshd de eu-west-1 à http://127.0.0.1:{port}" in err
    assert "connexion refusée" in err and "Errno" not in err and "urlopen" not in err


EVERY_DAEMON_COMMAND = [
    ["status"], ["reload"], ["health"],
    ["alerts", "list"], ["alerts", "test", "chat"],
    ["silence", "add", "team=db", "--comment", "maintenance"], ["silence", "list"], ["silence", "expire", "abc"],
    ["keys", "status"], ["keys", "rotate"], ["keys", "set", "--purpose", "secrets", "--min-decryption-version", "1"],
    ["keys", "rewrap"],
    ["usage", "--tenant", "acme-eu", "--period", "2026-10"], ["usage", "record", "--tenant", "acme-eu", "--meter", "m"],
    ["route", "--tenant", "acme-eu", "--from", "FR"],
    ["failover", "us-east-1", "--reason", "drill"], ["failback", "us-east-1", "--reason", "drill"],
    ["invoice", "--tenant", "acme-eu", "--period", "2026-10"], ["invoice", "credit", "INV-1", "--reason", "typo"],
]


@pytest.mark.parametrize("command", EVERY_DAEMON_COMMAND, ids=" ".join)
def test_every_command_that_asks_the_daemon_says_the_same_when_it_is_absent(
        configs: dict[str, Path], command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    path = configs["eu-west-1"]
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    set_http(path, port=port)
    token = load_config(path).daemon.state_dir / "admin.token"
    token.parent.mkdir(parents=True, exist_ok=True)
    token.write_text("not-a-real-token\n")
    assert main([*command, "--config", str(path)]) == 1
    err = capsys.readouterr().err
    if command[0] == "route":  # the routing plugin's own sentence, which adds --offline
        assert "eu-west-1" in err and "connection refused (is it running?)" in err and "--offline" in err
    else:
        assert err == (f"cannot reach the meshd daemon of eu-west-1 at http://127.0.0.1:{port}: "
                       "connection refused (is it running?)\n")
    assert "Errno" not in err and "Traceback" not in err


def test_a_silent_or_foreign_listener_is_told_apart(configs: dict[str, Path],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = configs["eu-west-1"]
    silent = RecordingListener(answer=None)
    try:
        set_http(path, port=silent.port)
        with pytest.raises(DaemonUnreachable) as caught:
            DaemonClient(load_config(path), timeout=0.5).request("GET", "/status")
        assert caught.value.reason == "timeout"
    finally:
        silent.close()
    foreign = RecordingListener(answer=b"SSH-2.0-OpenSSH_9.6\r\n")
    try:
        set_http(path, port=foreign.port)
        assert main(["status", "--config", str(path)]) == 1
        assert "the answer is not meshd's" in capsys.readouterr().err
    finally:
        foreign.close()


def test_an_absent_or_unreadable_admin_token_is_named(configs: dict[str, Path], listener: RecordingListener,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = configs["eu-west-1"]
    set_http(path, port=listener.port)
    token = load_config(path).daemon.state_dir / "admin.token"
    assert main(["reload", "--config", str(path)]) == 1
    assert f"no admin token at {token}: the daemon writes it when it starts" in capsys.readouterr().err
    token.parent.mkdir(parents=True, exist_ok=True)
    token.mkdir()  # unreadable as a file, whoever runs the test (root reads any file)
    assert main(["reload", "--config", str(path)]) == 1
    assert f"cannot read the admin token {token}: Is a directory" in capsys.readouterr().err
    assert listener.connections == 0  # nothing was sent without it


# ---------------------------------------------------------------- which config


def test_the_one_region_config_in_etc_meshd_is_the_default(configs: dict[str, Path],
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MESHD_CONFIG", raising=False)
    directory = configs["eu-west-1"].parent  # also holds region_map.yaml and trust.yaml, which are not configs
    monkeypatch.setattr(configpath, "SYSTEM_DIR", directory)
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert "2 region configs" in err and "eu-west-1.yaml, us-east-1.yaml" in err and "MESHD_CONFIG" in err
    configs["us-east-1"].unlink()
    set_http(configs["eu-west-1"], port=1)
    assert main(["status"]) == 1  # it took eu-west-1.yaml, and found no daemon behind it
    assert "meshd daemon of eu-west-1" in capsys.readouterr().err
    monkeypatch.setattr(configpath, "SYSTEM_DIR", directory / "empty")
    assert main(["status"]) == 2
    assert "no config given: pass --config PATH, set MESHD_CONFIG" in capsys.readouterr().err
