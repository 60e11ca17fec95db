"""``kind: http``: an HTTP(S) endpoint's status code, latency and (optionally) body.

The request is made with the standard library's ``http.client`` in a worker
thread: one request per check, a fresh connection each time (a reused
connection would hide the cost of a TLS handshake, which users do pay), no
redirects followed. Nothing here needs a third-party HTTP client.
"""

from __future__ import annotations

import http.client
import re
import ssl
import time
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field

import meshd
from meshd.config import RelPath, Secret

from .probes import Probe, ProbeResult, ProbeSettings, os_error_text, thresholded

MAX_BODY = 64 * 1024
"""Bytes of the body read for ``body_contains``; the rest is not downloaded."""

_STATUS_PATTERN = re.compile(r"^[1-5](\d\d|xx)$")


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{public_url(value)!r} is not an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials in the URL would show up in logs; put them in headers "
                         "(e.g. Authorization: !encrypted ...)")
    try:
        _ = parts.port  # urlsplit checks the port only when asked
    except ValueError:
        raise ValueError("the URL's port is not a number from 1 to 65535") from None
    return value


def _status(value: int | str) -> str:
    text = str(value).lower()
    if not _STATUS_PATTERN.match(text):
        raise ValueError(f"{value!r} is not a status code (200) or class (2xx)")
    return text


def public_url(url: str) -> str:
    """``url`` without user info, query or fragment: safe to log."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable URL>"
    return f"{parts.scheme}://{host}{port}{parts.path or '/'}"


class HttpSettings(ProbeSettings):
    url: Annotated[str, AfterValidator(_url)]
    method: Literal["GET", "HEAD"] = "GET"
    expect_status: list[Annotated[int | str, AfterValidator(_status)]] = Field(
        default_factory=lambda: ["2xx", "3xx"], min_length=1)  # type: ignore[arg-type]
    """Status codes (``200``) or classes (``2xx``) that count as ok; anything else is critical."""
    headers: dict[str, Secret] = Field(default_factory=dict)
    """Request headers; values may be ``!encrypted`` (a bearer token) and are never logged."""
    body_contains: str | None = None
    """If set, a body (its first 64 KiB) without this text is critical."""
    latency_warning: meshd.Duration | None = None
    latency_critical: meshd.Duration | None = None
    tls_verify: bool = True
    ca_file: RelPath | None = None
    """CA bundle to verify the server with, instead of the system's."""


def status_matches(code: int, patterns: list[str]) -> bool:
    text = str(code)
    return any(text == p or (p.endswith("xx") and text[0] == p[0]) for p in patterns)


class HttpProbe(Probe):
    """One request to ``url``: an unexpected status, a refused connection or a missing body text is critical."""

    kind = "http"
    unit = "s"
    Settings = HttpSettings
    settings: HttpSettings

    def _tls_context(self) -> ssl.SSLContext:
        s = self.settings
        context = ssl.create_default_context(cafile=str(s.ca_file) if s.ca_file else None)
        if not s.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _request(self, headers: dict[str, str]) -> tuple[int, bytes, float]:
        """Blocking: (status, first bytes of the body, seconds until the body was read)."""
        s = self.settings
        parts = urlsplit(s.url)
        host = parts.hostname or ""  # never empty: the URL was validated
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(host, parts.port, timeout=s.timeout,
                                               context=self._tls_context())
        else:
            conn = http.client.HTTPConnection(host, parts.port, timeout=s.timeout)
        began = time.perf_counter()
        try:
            conn.request(s.method, path, headers={"User-Agent": f"meshd-health/{meshd.__version__}",
                                                  "Connection": "close", **headers})
            response = conn.getresponse()
            body = response.read(MAX_BODY) if s.method != "HEAD" else b""
            return response.status, body, time.perf_counter() - began
        finally:
            conn.close()

    async def check(self) -> ProbeResult:
        s = self.settings
        headers = {name: self.context.secret(value) for name, value in s.headers.items()}
        where = public_url(s.url)
        try:
            status, body, latency = await self.run_blocking(self._request, headers)
        except ssl.SSLError as exc:
            return ProbeResult.critical(f"{where}: TLS error: {exc.reason or exc}")
        except OSError as exc:
            return ProbeResult.critical(f"{where}: {os_error_text(exc)}")
        except http.client.HTTPException as exc:
            return ProbeResult.critical(f"{where}: bad HTTP answer: {type(exc).__name__}: {exc}")
        if not status_matches(status, [str(p) for p in s.expect_status]):
            return ProbeResult.critical(
                f"{where} answered {status}, expected {', '.join(str(p) for p in s.expect_status)}", latency)
        if s.body_contains is not None and s.body_contains.encode() not in body:
            return ProbeResult.critical(f"{where} answered {status} without the expected text in its body",
                                        latency)
        return thresholded(latency, s.latency_warning, s.latency_critical, f"{where} latency",
                           lambda v: f"{v * 1000:.0f}ms")

    def describe(self) -> dict[str, Any]:
        return {"target": public_url(self.settings.url)}

