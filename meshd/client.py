"""Talking to a running daemon over its local HTTP endpoint (used by the CLI)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from .config import LoadedConfig


class DaemonUnreachable(Exception):
    pass


class DaemonClient:
    def __init__(self, config: LoadedConfig, timeout: float = 5.0):
        http = config.daemon.http
        host = "127.0.0.1" if http.listen in ("0.0.0.0", "::", "") else http.listen
        self.base = f"http://{host}:{http.port}"
        self.state_dir = config.daemon.state_dir
        self.timeout = timeout

    def _token(self) -> str:
        try:
            return (self.state_dir / "admin.token").read_text().strip()
        except OSError as exc:
            raise DaemonUnreachable(f"cannot read the admin token in {self.state_dir}: {exc.strerror}") from None

    def request(self, method: str, path: str, body: Any = None, *, admin: bool = False) -> tuple[int, Any]:
        """(status, decoded JSON body); raise :class:`DaemonUnreachable` if nothing answers."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if admin:
            req.add_header("Authorization", f"Bearer {self._token()}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read() or b"null")
            except ValueError:
                return exc.code, None
        except (OSError, ValueError) as exc:
            raise DaemonUnreachable(f"no daemon answers at {self.base}: {exc}") from None

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        if status >= 400:
            raise DaemonUnreachable(f"{self.base}{path}: HTTP {status}: {body}")
        return body

    def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        return self.request("POST", path, body, admin=True)
