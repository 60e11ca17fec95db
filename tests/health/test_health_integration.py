"""The health plugin in real daemons on a real nats-server, probing real loopback services.

* a real ``meshd run`` process (LocalFederation) probing a TCP service the
  test stops and restarts: degraded with that reason in /status, /healthz,
  /metrics and ``meshd health``, then healthy again;
* in-process daemons (running_daemons) with a probe kind from a test plugin
  (``meshd_probe_kinds``) and an HTTP probe of a loopback server whose answer
  the test changes.
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
import yaml

from meshd.cli import main
from meshd.natsserver import NatsServer
from meshd.testing import LocalFederation, running_daemons, write_federation

from .probe_plugin import FLAGS, FlagProbePlugin

T = TypeVar("T")


class TcpService:
    """A loopback TCP service that accepts and closes connections; it can be stopped and restarted on its port."""

    def __init__(self) -> None:
        self.port = 0
        self._listener: socket.socket | None = None
        self.start()

    def start(self) -> None:
        # SO_REUSEADDR (create_server's default on POSIX): the port is free again at once after stop().
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self.port = self._listener.getsockname()[1]
        self._listener.settimeout(0.2)
        threading.Thread(target=self._serve, args=(self._listener,), daemon=True).start()

    def _serve(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by stop()
            conn.close()

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None


def test_a_stopped_tcp_service_degrades_the_region_and_its_restart_heals_it(
        local_federation: Callable[..., LocalFederation], capsys: pytest.CaptureFixture[str]) -> None:
    service = TcpService()
    region = "eu-west-1"
    try:
        fed = local_federation(regions=[region], config={"health": {"probes": [
            {"name": "api", "kind": "tcp", "host": "127.0.0.1", "port": service.port, "interval": "200ms",
             "timeout": "1s", "fail_after": 2, "recover_after": 2},
        ]}})

        def health() -> dict[str, Any]:
            return (fed.status(region) or {}).get("health") or {}

        fed.wait_for(lambda: health().get("probes", [{}])[0].get("state") == "ok", what="api probe ok")
        assert health()["status"] == "healthy"

        service.stop()
        fed.wait_for(lambda: health().get("status") == "degraded", what="region degraded")
        doc = health()
        assert doc["reasons"] == ["api"]
        [api] = doc["probes"]
        assert api["state"] == "critical" and api["kind"] == "tcp" and api["target"] == f"127.0.0.1:{service.port}"
        assert api["last_error"] == f"cannot connect to 127.0.0.1:{service.port}: Connection refused"
        code, body = fed.http(region, "/healthz")
        assert code == 200  # degraded stays up
        check = next(c for c in body["checks"] if c["name"] == "health")
        assert check["status"] == "degraded" and check["reasons"] == ["api"] and check["detail"] == "degraded: api"
        assert fed.metric(region, "meshd_health_probe_state", probe="api", state="critical") == 1
        assert fed.metric(region, "meshd_health_status", status="degraded") == 1
        assert fed.metric(region, "meshd_health_probe_failures_total", probe="api", level="critical") >= 2

        assert main(["health", "--config", str(fed.config_path(region))]) == 0
        table = capsys.readouterr().out
        assert "region eu-west-1 is degraded" in table and "failing probes: api" in table
        assert "Connection refused" in table
        assert main(["--lang", "de", "health", "--config", str(fed.config_path(region)), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["reasons"] == ["api"]

        service.start()
        fed.wait_for(lambda: health().get("status") == "healthy", what="region healthy again")
        assert health()["reasons"] == [] and health()["probes"][0]["state"] == "ok"
        assert fed.metric(region, "meshd_health_status", status="healthy") == 1
        log = fed.log_text(region)
        assert "probe api: ok -> critical" in log and "probe api: critical -> ok" in log
        assert "region health: degraded (failing: api)" in log and "region health: healthy" in log
    finally:
        service.stop()


class Switchable(BaseHTTPRequestHandler):
    """Answers with the status code in ``self.server.answer`` (a list, so the test can change it)."""

    def do_GET(self) -> None:
        code = self.server.answer[0]  # type: ignore[attr-defined]
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


def get_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def until(predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    with anyio.fail_after(timeout):
        while not (value := await anyio.to_thread.run_sync(predicate)):
            await anyio.sleep(0.05)
    assert value, what
    return value


@pytest.mark.anyio
async def test_a_plugin_probe_kind_and_an_http_probe_in_daemons_on_nats(tmp_path: Path,
                                                                        nats_server: NatsServer) -> None:
    web = ThreadingHTTPServer(("127.0.0.1", 0), Switchable)
    web.answer = [200]  # type: ignore[attr-defined]
    threading.Thread(target=web.serve_forever, daemon=True).start()
    flag = f"integration-{tmp_path.name}"
    FLAGS[flag] = "ok"
    configs = write_federation(tmp_path, ["eu-west-1", "us-east-1"], nats_server.url, patch={"health": {"probes": [
        {"name": "db", "kind": "flag", "flag": flag, "severity": "critical", "interval": "100ms",
         "fail_after": 2, "recover_after": 1},
        {"name": "web", "kind": "http", "url": f"http://127.0.0.1:{web.server_address[1]}/healthz",
         "interval": "100ms", "timeout": "2s", "fail_after": 2, "recover_after": 1},
    ]}})
    # us-east-1 probes nothing: each daemon probes only its own region's services.
    other = configs["us-east-1"]
    data = yaml.safe_load(other.read_text())
    data["health"] = {"probes": []}
    other.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        async with running_daemons(configs, extra_plugins=[("flagprobe", FlagProbePlugin)]) as daemons:
            base = f"http://127.0.0.1:{daemons['eu-west-1'].http.bound_port}"

            async def fetch(path: str) -> tuple[int, Any]:
                # Off the event loop: the daemons answering it run on this very loop.
                return await anyio.to_thread.run_sync(get_json, base + path)

            def health() -> dict[str, Any]:
                return get_json(base + "/status")[1].get("health", {})

            await until(lambda: [p["state"] for p in health().get("probes", [])] == ["ok", "ok"], "both ok")

            web.answer[0] = 500  # type: ignore[attr-defined]
            await until(lambda: health().get("reasons") == ["web"], "web failing")
            web_probe = (await fetch("/status"))[1]["health"]["probes"][1]
            assert web_probe["last_error"].endswith("answered 500, expected 2xx, 3xx")
            assert web_probe["last_value"] > 0  # the latency of the failing answer is still measured
            assert (await fetch("/healthz"))[0] == 200

            FLAGS[flag] = "critical"
            await until(lambda: health().get("status") == "down", "down")
            assert (await fetch("/status"))[1]["health"]["reasons"] == ["db", "web"]
            code, body = await fetch("/healthz")
            assert code == 503 and not body["ok"]

            FLAGS[flag] = "ok"
            web.answer[0] = 204  # type: ignore[attr-defined]
            await until(lambda: health().get("status") == "healthy", "healthy again")
            assert (await fetch("/healthz"))[0] == 200
            # us-east-1 has its own (empty) probe set: eu-west-1's failures were never its verdict.
            other_health = (await daemons["us-east-1"].status())["health"]
            assert other_health["status"] == "healthy" and other_health["probes"] == []
    finally:
        FLAGS.pop(flag, None)
        web.shutdown()
        web.server_close()
