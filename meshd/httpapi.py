"""The daemon's local HTTP endpoint: /healthz, /metrics, /status and admin routes.

A deliberately small HTTP/1.1 server (one request per connection, bounded
header and body sizes) on anyio: it serves a handful of local clients
(Prometheus, systemd health checks, the ``meshd`` CLI), so it needs no
framework. Routes that change something require the admin token that the
daemon writes to ``<state_dir>/admin.token`` (mode 0600), so only users who
can read the state directory can drive the daemon.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
from anyio.abc import SocketStream, TaskStatus

MAX_HEADER = 16 * 1024
MAX_BODY = 1024 * 1024
READ_TIMEOUT = 5.0

log = logging.getLogger("meshd.http")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body as JSON; raises :class:`HTTPError` 400 if it is not."""
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            raise HTTPError(400, "body is not JSON") from None


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"

    @classmethod
    def json(cls, obj: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(obj, indent=2, default=str, ensure_ascii=False).encode() + b"\n")


class HTTPError(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message
        super().__init__(message)


Handler = Callable[[Request], Awaitable[Response] | Response]


@dataclass(frozen=True)
class Route:
    """``path`` may hold ``{name}`` parameters; ``admin`` routes need the bearer token."""

    method: str
    path: str
    handler: Handler
    admin: bool = False

    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path) + "$")


_REASONS = {200: "OK", 201: "Created", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized",
            404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 413: "Payload Too Large",
            500: "Internal Server Error", 503: "Service Unavailable"}


class HttpServer:
    def __init__(self, host: str, port: int, admin_token: Callable[[], str]):
        self.host, self.port = host, port
        self._admin_token = admin_token
        self._routes: list[tuple[Route, re.Pattern[str]]] = []
        self.bound_port: int | None = None

    def add(self, route: Route) -> None:
        self._routes.append((route, route.pattern()))

    async def serve(self, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await anyio.create_tcp_listener(local_host=self.host, local_port=self.port, reuse_port=False)
        self.bound_port = listener.extra(anyio.abc.SocketAttribute.local_port)
        task_status.started(self.bound_port)
        async with listener:
            await listener.serve(self._handle)

    async def _handle(self, stream: SocketStream) -> None:
        async with stream:
            try:
                with anyio.fail_after(READ_TIMEOUT):
                    request = await self._read(stream)
                response = await self.dispatch(request)
            except HTTPError as exc:
                response = Response.json({"error": exc.message}, exc.status)
            except TimeoutError:
                return
            except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
                return
            head = (
                f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Status')}\r\n"
                f"Content-Type: {response.content_type}\r\n"
                f"Content-Length: {len(response.body)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
            try:
                await stream.send(head + response.body)
            except (anyio.BrokenResourceError, ConnectionError):
                pass

    async def _read(self, stream: SocketStream) -> Request:
        buf = b""
        while b"\r\n\r\n" not in buf:
            if len(buf) > MAX_HEADER:
                raise HTTPError(413, "headers too large")
            buf += await stream.receive()
        head, _, rest = buf.partition(b"\r\n\r\n")
        if len(head) > MAX_HEADER:
            raise HTTPError(413, "headers too large")
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, _version = lines[0].split(" ", 2)
        except ValueError:
            raise HTTPError(400, "malformed request line") from None
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise HTTPError(400, "bad Content-Length") from None
        if length > MAX_BODY or length < 0:
            raise HTTPError(413, "body too large")
        body = rest
        while len(body) < length:
            body += await stream.receive()
        url = urlsplit(target)
        return Request(method.upper(), url.path, parse_qs(url.query), headers, body[:length])

    async def dispatch(self, request: Request) -> Response:
        allowed = False
        for route, pattern in self._routes:
            match = pattern.match(request.path)
            if not match:
                continue
            allowed = True
            if route.method != request.method:
                continue
            if route.admin and not self._authorized(request):
                return Response.json({"error": "admin token required (see <state_dir>/admin.token)"}, 401)
            request.params = match.groupdict()
            try:
                result = route.handler(request)
                if isinstance(result, Awaitable):
                    result = await result
                return result
            except HTTPError:
                raise
            except Exception as exc:
                log.exception("HTTP %s %s failed", request.method, request.path)
                return Response.json({"error": f"{type(exc).__name__}: {exc}"}, 500)
        if allowed:
            return Response.json({"error": "method not allowed"}, 405)
        return Response.json({"error": "not found"}, 404)

    def _authorized(self, request: Request) -> bool:
        got = request.headers.get("authorization", "")
        expected = "Bearer " + self._admin_token()
        return hmac.compare_digest(got.encode(), expected.encode())
