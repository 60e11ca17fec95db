"""A real HTTP server on a local socket that answers from a script, for the SDKs' unit tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


def problem(status: int, code: str, title: str, detail: str | None = None, fld: str | None = None,
            headers: dict[str, str] | None = None) -> Reply:
    body = {"type": f"https://meshd.dev/problems/{code}", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if fld:
        body["field"] = fld
    return Reply(status, body, headers or {}, "application/problem+json")


Responder = Callable[[Seen], Reply]


class ScriptedServer:
    """Answers each (method, path) with its script: replies in turn (the last one repeats) or a function."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self._routes: dict[tuple[str, str], Responder] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                seen = Seen(self.command, url.path, {k: v[0] for k, v in parse_qs(url.query).items()},
                            {k.lower(): v for k, v in self.headers.items()}, json.loads(raw) if raw else None)
                reply = server._answer(seen)
                payload = b"" if reply.body is None else (
                    reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode())
                self.send_response(reply.status)
                if payload:
                    self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def _answer(self, seen: Seen) -> Reply:
        with self._lock:
            self.seen.append(seen)
            responder = self._routes.get((seen.method, seen.path))
        if responder is None:
            return problem(404, "not_found", "Not found", f"no script for {seen.method} {seen.path}")
        return responder(seen)

    def script(self, method: str, path: str, *replies: Reply | Responder) -> None:
        queue = list(replies)

        def next_reply(seen: Seen) -> Reply:
            with self._lock:
                current = queue.pop(0) if len(queue) > 1 else queue[0]
            return current(seen) if callable(current) else current

        self._routes[(method, path)] = next_reply

    def requests(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.seen if (s.method, s.path) == (method, path)]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._http.shutdown()
        self._http.server_close()


def tenant_json(tenant_id: str = "t_aaaaaaaaaaaaaaaa", **over: Any) -> dict[str, Any]:
    body = {"id": tenant_id, "name": "Bistro", "partner": "acme", "plan": "pro", "residency": "EU",
            "home": "eu-west-1", "status": "active", "branding": None, "created": "2026-12-07T00:00:00Z",
            "updated": "2026-12-07T00:00:00Z", "revision": 1}
    body.update(over)
    return body
