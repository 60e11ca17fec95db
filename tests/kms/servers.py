"""moto's AWS KMS server on loopback for the contract tests (OpenBao's is ``meshd_kms_vault_transit.devserver``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from meshd.natsserver import free_port
from meshd.testing import wait_for


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
