"""Talking to a running daemon over its local HTTP endpoint (used by the CLI).

The endpoint is plain HTTP and admin calls carry the admin token, so the
client only talks to a loopback address, straight to the socket: never
through a proxy from ``http_proxy`` / ``HTTP_PROXY`` (urllib's default
opener would hand it the token) and never following a redirect elsewhere.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .config import LoadedConfig

ANY_ADDRESS = ("0.0.0.0", "::", "")


class DaemonUnreachable(Exception):
    """No usable answer from the daemon at ``url``.

    ``reason`` says why in a word the CLI translates: ``refused``,
    ``timeout``, ``reset``, ``not_http``, ``no_token`` / ``token`` (the admin
    token file is absent / could not be read), ``status`` (an error status from :meth:`DaemonClient.get`)
    or ``other`` (then ``detail`` has the system's words).
    """

    def __init__(self, url: str, reason: str, detail: str = "", path: Path | None = None):
        self.url, self.reason, self.detail, self.path = url, reason, detail, path
        super().__init__(f"{url}: {reason}" + (f": {detail}" if detail else ""))


class DaemonURLRefused(DaemonUnreachable):
    """The daemon's address is not loopback: the CLI will not send the admin token there over plain HTTP."""

    def __init__(self, url: str):
        super().__init__(url, "not_loopback")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # urllib copies the Authorization header into a redirected request; the daemon never redirects.
    def redirect_request(self, *_args: Any, **_kw: Any) -> None:
        return None


def local_opener() -> urllib.request.OpenerDirector:
    """A urllib opener that ignores proxy settings and redirects: for loopback calls only."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name could resolve anywhere


def admin_base_url(config: LoadedConfig) -> str:
    """``http://HOST:PORT`` where the CLI reaches this config's daemon."""
    http_config = config.daemon.http
    host = "127.0.0.1" if http_config.listen in ANY_ADDRESS else http_config.listen
    return f"http://[{host}]:{http_config.port}" if ":" in host else f"http://{host}:{http_config.port}"


def _reason(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason
    if isinstance(exc, TimeoutError):
        return "timeout", ""
    if isinstance(exc, ConnectionRefusedError):
        return "refused", ""
    if isinstance(exc, ConnectionResetError | BrokenPipeError):  # RemoteDisconnected is a reset
        return "reset", ""
    if isinstance(exc, http.client.HTTPException | ValueError):
        return "not_http", ""
    if isinstance(exc, OSError):
        return "other", exc.strerror or str(exc)
    return "other", str(exc)


class DaemonClient:
    def __init__(self, config: LoadedConfig, timeout: float = 5.0):
        self.base = admin_base_url(config)
        self.host = config.daemon.http.listen
        self.state_dir = config.daemon.state_dir
        self.timeout = timeout
        self._opener = local_opener()

    def _token(self) -> str:
        path = self.state_dir / "admin.token"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            raise DaemonUnreachable(self.base, "no_token", "", path) from None
        except OSError as exc:
            raise DaemonUnreachable(self.base, "token", exc.strerror or str(exc), path) from None

    def request(self, method: str, path: str, body: Any = None, *, admin: bool = False) -> tuple[int, Any]:
        """(status, decoded JSON body); raise :class:`DaemonUnreachable` if nothing usable answers."""
        host = "127.0.0.1" if self.host in ANY_ADDRESS else self.host
        if not is_loopback(host):
            raise DaemonURLRefused(self.base)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if admin:
            req.add_header("Authorization", f"Bearer {self._token()}")
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            with exc:
                try:
                    return exc.code, json.loads(exc.read() or b"null")
                except ValueError:
                    return exc.code, None
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise DaemonUnreachable(self.base, *_reason(exc)) from None

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        if status >= 400:
            raise DaemonUnreachable(self.base, "status", f"HTTP {status}: {body}")
        return body

    def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        return self.request("POST", path, body, admin=True)
