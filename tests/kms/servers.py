"""Real KMS servers on loopback for the contract tests: an OpenBao dev server, moto's AWS server."""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from meshd.natsserver import free_port
from meshd.testing import wait_for


@dataclass
class OpenBao:
    """``bao server -dev``: in-memory, unsealed, with a known root token."""

    binary: str
    workdir: Path
    port: int = 0
    token: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OpenBao:
        self.port = self.port or free_port()
        self.token = self.token or secrets.token_urlsafe(24)
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "bao.log", "ab")
        self.proc = subprocess.Popen(
            [self.binary, "server", "-dev", f"-dev-listen-address=127.0.0.1:{self.port}",
             f"-dev-root-token-id={self.token}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir,
            env={"HOME": str(self.workdir), "PATH": "/usr/bin:/bin"})
        log.close()
        wait_for(self._healthy, timeout=30, what=f"OpenBao dev server on port {self.port}")
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, (self.workdir / "bao.log").read_text()
        try:
            return requests.get(f"{self.url}/v1/sys/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class MotoKms:
    """moto's server mode on loopback: a real HTTP server answering the AWS KMS API."""

    port: int = 0
    server: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoKms:
        from moto.server import ThreadedMotoServer

        self.port = self.port or free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        wait_for(self._answers, timeout=30, what=f"moto server on port {self.port}")
        return self

    def _answers(self) -> bool:
        try:
            return requests.get(f"{self.url}/moto-api/", timeout=1).status_code < 500
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
