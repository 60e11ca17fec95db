"""The local HTTP endpoint on a real socket: routing, admin token, and every kind of bad request.

Bad requests are sent as raw bytes, the way a broken or hostile client would;
each must get a 4xx with a short JSON reason, never exception text, and the
server must keep serving.
"""

from __future__ import annotations

import json
import socket

import anyio
import pytest

from meshd import httpapi
from meshd.httpapi import HTTPError, HttpServer, Request, Response, Route
from meshd.metrics import Metrics
from meshd.testing import raw_http

pytestmark = pytest.mark.anyio

TOKEN = "s3cret-token"


async def raw_request(port: int, data: bytes) -> bytes:
    """Send ``data`` as is, half-close, and read the whole answer."""
    return await anyio.to_thread.run_sync(raw_http, port, data)


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def body_of(raw: bytes) -> dict:
    return json.loads(raw.partition(b"\r\n\r\n")[2])


class Server:
    def __init__(self) -> None:
        self.metrics = Metrics()
        self.http = HttpServer("127.0.0.1", 0, lambda: TOKEN, self.metrics)
        self.admin_calls = 0

    @property
    def port(self) -> int:
        assert self.http.bound_port
        return self.http.bound_port

    def rejected(self, status: int) -> float:
        return self.metrics.value("http_requests_rejected_total", status=str(status))


@pytest.fixture
async def server() -> Server:
    srv = Server()
    srv.http.add(Route("GET", "/hello/{name}", lambda r: Response.json({"hi": r.params["name"], "q": r.query})))

    def admin(r: Request) -> Response:
        srv.admin_calls += 1
        return Response.json({"got": r.json(), "length": len(r.body)})

    srv.http.add(Route("POST", "/admin", admin, admin=True))

    async def boom(_r: Request) -> Response:
        raise RuntimeError("handler bug at /srv/secret/path")

    def refuse(_r: Request) -> Response:
        raise HTTPError(409, "already done")

    srv.http.add(Route("GET", "/boom", boom))
    srv.http.add(Route("GET", "/refuse", refuse))
    async with anyio.create_task_group() as tg:
        await tg.start(srv.http.serve)
        yield srv
        tg.cancel_scope.cancel()


def assert_no_internals(raw: bytes) -> None:
    for leak in (b"Traceback", b"Error:", b"bytearray", b"h11", b"File \""):
        assert leak not in raw, raw


async def test_routes_params_and_status_codes(server: Server) -> None:
    resp = await raw_request(server.port, b"GET /hello/ana?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 200 OK\r\n") and body_of(resp) == {"hi": "ana", "q": {"x": ["1"]}}
    assert b"connection: close" in resp.lower()
    assert status_of(await raw_request(server.port, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")) == 404
    assert status_of(await raw_request(server.port, b"POST /hello/ana HTTP/1.1\r\nHost: x\r\n\r\n")) == 405
    refused = await raw_request(server.port, b"GET /refuse HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(refused) == 409 and body_of(refused) == {"error": "already done"}
    head = await raw_request(server.port, b"HEAD /nope HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(head) == 404 and head.endswith(b"\r\n\r\n")  # no body after a HEAD
    # HTTP/1.0 needs no Host.
    assert status_of(await raw_request(server.port, b"GET /hello/b HTTP/1.0\r\n\r\n")) == 200


async def test_a_failing_handler_gets_a_generic_500_and_a_counter(server: Server) -> None:
    resp = await raw_request(server.port, b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(resp) == 500
    assert body_of(resp) == {"error": "internal error (see the daemon's log)"}
    assert b"handler bug" not in resp and b"secret" not in resp and b"RuntimeError" not in resp
    assert_no_internals(resp)
    assert server.metrics.value("http_handler_errors_total", route="/boom") == 1
    assert status_of(await raw_request(server.port, b"GET /hello/b HTTP/1.1\r\nHost: x\r\n\r\n")) == 200


async def test_admin_routes_need_the_token(server: Server) -> None:
    body = b'{"a": 1}'
    base = b"POST /admin HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n"
    assert status_of(await raw_request(server.port, base + b"\r\n" + body)) == 401
    assert status_of(await raw_request(server.port, base + b"Authorization: Bearer nope\r\n\r\n" + body)) == 401
    assert server.admin_calls == 0
    ok = await raw_request(server.port, base + b"Authorization: Bearer s3cret-token\r\n\r\n" + body)
    assert status_of(ok) == 200 and body_of(ok)["got"] == {"a": 1}
    not_json = b"POST /admin HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nAuthorization: Bearer s3cret-token\r\n\r\n{{{"
    assert status_of(await raw_request(server.port, not_json)) == 400


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /admin HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    b"GET / HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello on the plain port
    b"GET / HTTP/1.1\r\nHost: x\r\n",  # closed before the headers end
])
async def test_malformed_requests_get_400(server: Server, raw: bytes) -> None:
    resp = await raw_request(server.port, raw)
    assert status_of(resp) == 400, resp
    assert body_of(resp) == {"error": "malformed HTTP request"}
    assert_no_internals(resp)
    assert server.rejected(400) == 1
    assert status_of(await raw_request(server.port, b"GET /hello/b HTTP/1.1\r\nHost: x\r\n\r\n")) == 200


async def test_chunked_bodies_are_refused_not_read_as_empty(server: Server) -> None:
    chunked = (b"POST /admin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret-token\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n8\r\n{\"a\": 1}\r\n0\r\n\r\n")
    resp = await raw_request(server.port, chunked)
    assert status_of(resp) == 411 and "Content-Length" in body_of(resp)["error"]
    assert server.admin_calls == 0 and server.rejected(411) == 1
    gzip = b"POST /admin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"
    assert status_of(await raw_request(server.port, gzip)) == 501
    assert server.admin_calls == 0


async def test_oversized_bodies_get_413_and_the_client_reads_why(server: Server) -> None:
    announced = b"POST /admin HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n"
    assert status_of(await raw_request(server.port, announced)) == 413
    # A body really sent: the server answers early and drains, so the answer is not lost in a reset.
    size = httpapi.MAX_BODY + 1
    sent = (b"POST /admin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret-token\r\n"
            b"Content-Length: %d\r\n\r\n" % size) + b"x" * size
    resp = await raw_request(server.port, sent)
    assert status_of(resp) == 413 and "at most" in body_of(resp)["error"]
    assert server.admin_calls == 0 and server.rejected(413) == 2
    # Exactly the limit is accepted.
    limit = b"[" + b"0," * ((httpapi.MAX_BODY - 3) // 2) + b"0]"
    limit += b" " * (httpapi.MAX_BODY - len(limit))
    ok = await raw_request(server.port, b"POST /admin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret-token\r\n"
                                        b"Content-Length: %d\r\n\r\n" % len(limit) + limit)
    assert status_of(ok) == 200 and body_of(ok)["length"] == httpapi.MAX_BODY


async def test_header_bombs_get_431(server: Server) -> None:
    one_huge = b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * (httpapi.MAX_HEADER + 1) + b"\r\n\r\n"
    resp = await raw_request(server.port, one_huge)
    assert status_of(resp) == 431
    assert_no_internals(resp)
    many = b"GET /hello/b HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X%d: y\r\n" % i for i in range(150)) + b"\r\n"
    assert len(many) < httpapi.MAX_HEADER  # small in bytes, too many in number
    assert status_of(await raw_request(server.port, many)) == 431
    endless = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 20_000 + b"\r\n"
    assert status_of(await raw_request(server.port, endless)) == 431
    long_target = b"GET /" + b"a" * (httpapi.MAX_HEADER + 1) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert status_of(await raw_request(server.port, long_target)) == 431
    assert server.rejected(431) == 4
    assert status_of(await raw_request(server.port, b"GET /hello/b HTTP/1.1\r\nHost: x\r\n\r\n")) == 200


async def test_expect_100_continue_is_answered_before_the_body(server: Server) -> None:
    body = b'{"a": 1}'

    def go(length: int) -> tuple[bytes, bytes]:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(b"POST /admin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret-token\r\n"
                      b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % length)
            interim = s.recv(65536)
            if interim.startswith(b"HTTP/1.1 100 "):
                s.sendall(body)
            s.shutdown(socket.SHUT_WR)
            rest = b""
            while chunk := s.recv(65536):
                rest += chunk
            return interim, rest

    interim, rest = await anyio.to_thread.run_sync(go, len(body))
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n" and status_of(rest) == 200 and body_of(rest)["got"] == {"a": 1}
    # Too large: refused at once, and the client never sends the body.
    interim, rest = await anyio.to_thread.run_sync(go, httpapi.MAX_BODY + 1)
    assert status_of(interim) == 413 and server.admin_calls == 1


async def test_a_request_that_never_ends_gets_408(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(httpapi, "READ_TIMEOUT", 0.3)

    def go() -> bytes:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(b"GET /hello/b HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            return s.recv(65536)

    resp = await anyio.to_thread.run_sync(go)
    assert status_of(resp) == 408 and server.rejected(408) == 1


async def test_a_silent_connection_is_closed_without_an_answer(server: Server,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(httpapi, "READ_TIMEOUT", 0.3)

    def go() -> bytes:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            return s.recv(65536)  # a TCP health check connects and says nothing

    assert await anyio.to_thread.run_sync(go) == b""
    assert server.rejected(408) == 0
