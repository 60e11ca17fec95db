"""The daemon's local HTTP endpoint: /healthz, /metrics, /status and admin routes.

A small server (one request per connection) on anyio that serves a handful
of local clients (Prometheus, systemd health checks, the ``meshd`` CLI). The
HTTP/1.1 parsing is h11's: request lines, header syntax, Content-Length and
framing are checked by a maintained parser, not by hand. What this module
adds is policy: bounded header and body sizes, no chunked request bodies,
a generic 500 for a handler that raises. Routes that change something
require the admin token that the daemon writes to ``<state_dir>/admin.token``
(mode 0600), so only users who can read the state directory can drive the
daemon.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import anyio
import h11
from anyio.abc import SocketStream, TaskStatus

if TYPE_CHECKING:
    from .metrics import Metrics

MAX_HEADER = 16 * 1024
"""Bytes of request line plus headers; more is answered 431."""
MAX_HEADER_COUNT = 100
MAX_BODY = 1024 * 1024
READ_TIMEOUT = 5.0
RECEIVE_SIZE = 64 * 1024

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


class HttpServer:
    """Serves :class:`Route` handlers; counts what it refuses or fails in ``metrics``."""

    def __init__(self, host: str, port: int, admin_token: Callable[[], str], metrics: Metrics | None = None):
        from .metrics import Metrics

        self.host, self.port = host, port
        self._admin_token = admin_token
        self._routes: list[tuple[Route, re.Pattern[str]]] = []
        self.bound_port: int | None = None
        metrics = metrics or Metrics()
        self._rejected = metrics.counter("http_requests_rejected_total",
                                         "Requests refused before any handler ran, by HTTP status", ["status"])
        self._handler_errors = metrics.counter("http_handler_errors_total",
                                               "Requests whose handler raised (answered 500), by route", ["route"])

    def add(self, route: Route) -> None:
        self._routes.append((route, route.pattern()))

    async def serve(self, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await anyio.create_tcp_listener(local_host=self.host, local_port=self.port, reuse_port=False)
        self.bound_port = listener.extra(anyio.abc.SocketAttribute.local_port)
        task_status.started(self.bound_port)
        async with listener:
            await listener.serve(self._handle)

    async def _handle(self, stream: SocketStream) -> None:
        # One task per connection inside the listener's task group: an exception
        # escaping here would take the whole endpoint (and the daemon) down.
        async with stream:
            conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER)
            try:
                await self._exchange(conn, stream)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
                pass
            except Exception:
                log.exception("local HTTP connection failed")
                self._handler_errors.labels("-").inc()

    async def _exchange(self, conn: h11.Connection, stream: SocketStream) -> None:
        method = ""
        try:
            with anyio.fail_after(READ_TIMEOUT):
                request = await self._read(conn, stream)
            method = request.method
        except HTTPError as exc:
            response = self._refuse(exc.status, exc.message)
        except h11.RemoteProtocolError as exc:
            # h11's message quotes the offending bytes: the body says only what kind of problem it was.
            status = exc.error_status_hint
            response = self._refuse(status, _PROTOCOL_ERRORS.get(status, "malformed HTTP request"))
        except TimeoutError:
            if conn.their_state is h11.IDLE and not conn.trailing_data[0]:
                return  # connected and said nothing (a TCP health check): nothing to answer
            response = self._refuse(408, f"request not received within {READ_TIMEOUT:g}s")
        else:
            response = await self.dispatch(request)
        await self._send(conn, stream, response, head_only=method == "HEAD")
        if conn.their_state is not h11.DONE:
            await _drain(stream)

    def _refuse(self, status: int, message: str) -> Response:
        self._rejected.labels(str(status)).inc()
        return Response.json({"error": message}, status)

    async def _read(self, conn: h11.Connection, stream: SocketStream) -> Request:
        head = await _next_event(conn, stream)
        if not isinstance(head, h11.Request):
            raise anyio.EndOfStream  # closed before a request
        if len(head.headers) > MAX_HEADER_COUNT:
            raise HTTPError(431, f"too many headers (at most {MAX_HEADER_COUNT})")
        # h11 bounds only a head still incomplete; one that arrived whole in a single read is measured here.
        size = len(head.method) + len(head.target) + sum(len(n) + len(v) + 4 for n, v in head.headers)
        if size > MAX_HEADER:
            raise HTTPError(431, _PROTOCOL_ERRORS[431])
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in head.headers}
        if "transfer-encoding" in headers:
            # h11 would decode chunks, but an unbounded stream has no place on this endpoint.
            raise HTTPError(411, "chunked request bodies are not accepted: send Content-Length")
        if int(headers.get("content-length", "0")) > MAX_BODY:  # h11 has checked it is a number
            raise HTTPError(413, f"body too large (at most {MAX_BODY} bytes)")
        if conn.they_are_waiting_for_100_continue:  # curl asks before a body over 1 KiB, else waits 1 s
            interim = h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
            await stream.send(conn.send(interim) or b"")
        body = bytearray()
        while not isinstance(event := await _next_event(conn, stream), h11.EndOfMessage):
            if not isinstance(event, h11.Data):
                raise anyio.EndOfStream  # closed in the middle of the body
            body += event.data
        url = urlsplit(head.target.decode("latin-1"))
        return Request(head.method.decode("latin-1").upper(), url.path, parse_qs(url.query), headers, bytes(body))

    async def _send(self, conn: h11.Connection, stream: SocketStream, response: Response, *,
                    head_only: bool = False) -> None:
        try:
            reason = HTTPStatus(response.status).phrase.encode()
        except ValueError:
            reason = b""
        headers = [("Content-Type", response.content_type), ("Content-Length", str(len(response.body))),
                   ("Connection", "close")]
        data = conn.send(h11.Response(status_code=response.status, headers=headers, reason=reason)) or b""
        if not head_only:
            data += conn.send(h11.Data(data=response.body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        await stream.send(data)

    async def dispatch(self, request: Request) -> Response:
        """The response of the route matching ``request``; a handler's own failure is a generic 500."""
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
            except HTTPError as exc:
                return Response.json({"error": exc.message}, exc.status)
            except Exception:
                # The exception's text may hold anything (paths, values): the log has it, the client does not.
                log.exception("HTTP %s %s: the handler failed", request.method, route.path)
                self._handler_errors.labels(route.path).inc()
                return Response.json({"error": "internal error (see the daemon's log)"}, 500)
        if allowed:
            return Response.json({"error": "method not allowed"}, 405)
        return Response.json({"error": "not found"}, 404)

    def _authorized(self, request: Request) -> bool:
        got = request.headers.get("authorization", "")
        expected = "Bearer " + self._admin_token()
        return hmac.compare_digest(got.encode(), expected.encode())


_PROTOCOL_ERRORS = {
    400: "malformed HTTP request",
    431: f"request line and headers too large (at most {MAX_HEADER} bytes)",
    501: "unsupported Transfer-Encoding",
}


async def _next_event(conn: h11.Connection, stream: SocketStream) -> Any:
    while (event := conn.next_event()) is h11.NEED_DATA:
        try:
            conn.receive_data(await stream.receive(RECEIVE_SIZE))
        except anyio.EndOfStream:
            conn.receive_data(b"")
    return event


async def _drain(stream: SocketStream, limit: int = 2 * MAX_BODY, seconds: float = 1.0) -> None:
    """Read and drop what the client still sends after an early answer (a refused body).

    Closing a socket with unread bytes makes the kernel send a reset, and the
    client may lose the answer it has not read yet; half-closing and
    draining first lets it read why it was refused.
    """
    await stream.send_eof()
    seen = 0
    with anyio.move_on_after(seconds):
        while seen < limit:
            seen += len(await stream.receive(RECEIVE_SIZE))
