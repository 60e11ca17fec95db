"""A real HAProxy in front of two versions of a tiny HTTP service, for the deploy tests and bench/deploy_bench.py.

:class:`Version` is an HTTP server on a loopback port (a thread) whose error
rate and latency the test sets: exactly every ``1/error_rate``-th request
answers 500 (and every ``1/slow_rate``-th takes ``slow_latency`` more), so a
share is exact, not a coin toss. It serves ``/metrics`` for Prometheus: a
prometheus-client histogram of its request durations by build and status code. :class:`HAProxy` starts
``haproxy -f cfg -db`` with an admin socket and a frontend on free ports,
backend ``api`` with servers ``stable`` (weight 100) and ``canary`` (0).
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from meshd.natsserver import free_port
from meshd.testing import wait_for


def system_binary(name: str) -> str:
    """A binary of the Debian package ``name``; skipped outside CI when missing, a failure in CI (.ci/run installs it)."""
    found = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (apt-get install {name}); .ci/run installs it")
        pytest.skip(f"{name} is not installed (apt-get install {name})")
    return found


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it is still there after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # HAProxy closes idle keep-alive connections to a server at will: a reset is not news.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Version:
    """One version of the service: answers ``version`` in a header; errors and latency on demand."""

    def __init__(self, name: str, error_rate: float = 0.0, latency: float = 0.0):
        self.name, self.error_rate, self.latency = name, error_rate, latency
        self.slow_rate, self.slow_latency = 0.0, 0.0
        self.build = "v1"
        """The build this server says it runs, a label of its metrics (a canary's next build is a new series)."""
        self.served = 0
        self._lock = threading.Lock()
        self.registry = CollectorRegistry()
        self.durations = Histogram("http_request_duration_seconds", "Requests served, by build and status code",
                                   ["version", "code"],
                                   registry=self.registry,
                                   buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
        version = self

        def every(n: int, rate: float) -> bool:
            return rate > 0 and int(n * rate) != int((n - 1) * rate)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self.answer(200, generate_latest(version.registry))
                    return
                began = time.perf_counter()
                with version._lock:
                    version.served += 1
                    n = version.served
                fail = every(n, version.error_rate)
                delay = version.latency + (version.slow_latency if every(n, version.slow_rate) else 0.0)
                if delay:
                    time.sleep(delay)  # the service under test is slow on purpose
                code = 500 if fail else 200
                self.answer(code, version.name.encode())
                version.durations.labels(version.build, str(code)).observe(time.perf_counter() - began)

            def answer(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("X-Version", version.name)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        # A short poll: shutdown() waits up to one poll, once per version in every test and bench teardown.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


CONFIG = """\
global
    stats socket {socket} mode 600 level admin
    maxconn 2000
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend web
    bind 127.0.0.1:{port}
    default_backend api
backend api
    balance roundrobin
    server stable 127.0.0.1:{stable} weight 100
    server canary 127.0.0.1:{canary} weight 0
"""


class HAProxy:
    def __init__(self, workdir: Path, stable: Version, canary: Version):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        # HAProxy refuses a socket path over 97 bytes, which pytest's per-worker tmp paths pass easily.
        self.socket_dir = Path(tempfile.mkdtemp(prefix="hap-"))
        self.socket = self.socket_dir / "admin.sock"
        self.port = free_port()
        self.config = workdir / "haproxy.cfg"
        self.config.write_text(CONFIG.format(socket=self.socket, port=self.port, stable=stable.port,
                                             canary=canary.port))
        self.log = open(workdir / "haproxy.log", "wb")
        self.proc = subprocess.Popen([system_binary("haproxy"), "-f", str(self.config), "-db"], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        wait_for(self._up, timeout=20, what="haproxy's admin socket and frontend")

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"haproxy exited {self.proc.returncode}: "
                                 f"{(self.workdir / 'haproxy.log').read_text(errors='replace')}")
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(self.socket))
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def admin(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.socket))
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def weights(self) -> dict[str, int]:
        out = {}
        for server in ("stable", "canary"):
            out[server] = int(self.admin(f"get weight api/{server}").split()[0])
        return out

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()
        shutil.rmtree(self.socket_dir, ignore_errors=True)


class Client:
    """Sends requests through the frontend on one keep-alive connection; counts who answered."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(self) -> tuple[str, int]:
        for attempt in (1, 2):
            try:
                self.conn.request("GET", "/")
                resp = self.conn.getresponse()
                resp.read()
                return resp.getheader("X-Version") or "", resp.status
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def share(self, n: int) -> Counter[str]:
        return Counter(self.get()[0] for _ in range(n))

    def close(self) -> None:
        self.conn.close()
