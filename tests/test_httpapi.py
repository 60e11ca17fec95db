"""The local HTTP endpoint: routing, admin token, malformed and oversized requests."""

from __future__ import annotations

import socket

import anyio
import pytest

from meshd.httpapi import HttpServer, Request, Response, Route

pytestmark = pytest.mark.anyio


async def raw_request(port: int, data: bytes) -> bytes:
    def go() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(data)
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)

    return await anyio.to_thread.run_sync(go)


@pytest.fixture
async def server() -> HttpServer:
    srv = HttpServer("127.0.0.1", 0, lambda: "s3cret-token")
    srv.add(Route("GET", "/hello/{name}", lambda r: Response.json({"hi": r.params["name"], "q": r.query})))
    srv.add(Route("POST", "/admin", lambda r: Response.json({"got": r.json()}), admin=True))

    async def boom(_r: Request) -> Response:
        raise RuntimeError("handler bug")

    srv.add(Route("GET", "/boom", boom))
    async with anyio.create_task_group() as tg:
        await tg.start(srv.serve)
        yield srv
        tg.cancel_scope.cancel()


async def test_routes_params_and_status_codes(server: HttpServer) -> None:
    port = server.bound_port
    resp = await raw_request(port, b"GET /hello/ana?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 200 OK") and b'"hi": "ana"' in resp and b'"x": [' in resp
    assert (await raw_request(port, b"GET /nope HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404")
    assert (await raw_request(port, b"POST /hello/ana HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405")
    resp = await raw_request(port, b"GET /boom HTTP/1.1\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 500") and b"handler bug" in resp


async def test_admin_routes_need_the_token(server: HttpServer) -> None:
    port = server.bound_port
    body = b'{"a": 1}'
    base = b"POST /admin HTTP/1.1\r\nContent-Length: 8\r\n"
    assert (await raw_request(port, base + b"\r\n" + body)).startswith(b"HTTP/1.1 401")
    wrong = await raw_request(port, base + b"Authorization: Bearer nope\r\n\r\n" + body)
    assert wrong.startswith(b"HTTP/1.1 401")
    ok = await raw_request(port, base + b"Authorization: Bearer s3cret-token\r\n\r\n" + body)
    assert ok.startswith(b"HTTP/1.1 200") and b'"got": {' in ok


async def test_bad_requests_get_4xx_and_the_server_keeps_serving(server: HttpServer) -> None:
    port = server.bound_port
    assert (await raw_request(port, b"GARBAGE\r\n\r\n")).startswith(b"HTTP/1.1 400")
    assert (await raw_request(port, b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n")).startswith(b"HTTP/1.1 400")
    huge = b"POST /admin HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"
    assert (await raw_request(port, huge)).startswith(b"HTTP/1.1 413")
    headers = b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * 20000 + b"\r\n\r\n"
    assert (await raw_request(port, headers)).startswith(b"HTTP/1.1 413")
    not_json = b"POST /admin HTTP/1.1\r\nContent-Length: 3\r\nAuthorization: Bearer s3cret-token\r\n\r\n{{{"
    assert (await raw_request(port, not_json)).startswith(b"HTTP/1.1 400")
    assert (await raw_request(port, b"GET /hello/b HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 200")
