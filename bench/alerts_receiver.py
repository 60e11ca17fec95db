"""A recording HTTP receiver on loopback, for tests and benchmarks of alert delivery.

It answers like a webhook (apprise ``json://``), the PagerDuty Events API v2
(``/v2/enqueue``) and the Opsgenie Alert API (``/v2/alerts``), records what
it accepted, and can be taken down (connection refused) and brought back on
the same port, or told to answer with an error status for a while::

    with RecordingReceiver() as rx:
        url = rx.json_url("/hook")              # json://127.0.0.1:PORT/hook
        rx.fail(503, count=3)                   # the next three requests get 503
        rx.wait_for(lambda got: len(got) >= 1)

and small async helpers for tests driving in-process daemons
(:func:`meshd.testing.running_daemons`): raise the same alert on every
daemon, wait for every outbox to drain.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio

from meshd.alerting import Alert
from meshd.natsserver import free_port
from meshd.testing import until


@dataclass
class Received:
    """One request the receiver saw."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float
    status: int

    @property
    def title(self) -> str:
        return str(self.body.get("title", "")) if isinstance(self.body, dict) else ""

    @property
    def message(self) -> str:
        return str(self.body.get("message", "")) if isinstance(self.body, dict) else ""


@dataclass
class _Failure:
    status: int
    count: int
    headers: dict[str, str] = field(default_factory=dict)


class RecordingReceiver:
    """A threaded HTTP server recording every request (``attempts``) and the accepted ones (``received``)."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.attempts: list[Received] = []
        self._lock = threading.Condition()
        self._failures: list[_Failure] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.delay = 0.0

    # ------------------------------------------------------------ URLs

    def json_url(self, path: str = "/hook") -> str:
        return f"json://127.0.0.1:{self.port}{path}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------ control

    def start(self) -> RecordingReceiver:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body: Any = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                status, headers = owner._answer()
                if owner.delay:
                    time.sleep(owner.delay)
                record = Received("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                                  time.time(), status)
                with owner._lock:
                    owner.attempts.append(record)
                    owner._lock.notify_all()
                reply = json.dumps({"status": "success" if status < 300 else "error",
                                    "dedup_key": (body or {}).get("dedup_key") if isinstance(body, dict) else None,
                                    "requestId": f"req-{len(owner.attempts)}"}).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_PUT = do_POST

            def log_message(self, *_args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name=f"receiver:{self.port}")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket: senders get 'connection refused' until :meth:`start` again."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    down = stop

    def up(self) -> RecordingReceiver:
        return self.start()

    def fail(self, status: int, count: int = 1_000_000, headers: dict[str, str] | None = None) -> None:
        """Answer the next ``count`` requests with ``status`` (and ``headers``, e.g. Retry-After)."""
        with self._lock:
            self._failures.append(_Failure(status, count, dict(headers or {})))

    def heal(self) -> None:
        with self._lock:
            self._failures.clear()

    def _answer(self) -> tuple[int, dict[str, str]]:
        with self._lock:
            while self._failures:
                failure = self._failures[0]
                if failure.count <= 0:
                    self._failures.pop(0)
                    continue
                failure.count -= 1
                return failure.status, failure.headers
        return 202, {}

    # ------------------------------------------------------------ observing

    @property
    def received(self) -> list[Received]:
        """Requests answered with a 2xx, in arrival order."""
        with self._lock:
            return [r for r in self.attempts if 200 <= r.status < 300]

    def wait_for(self, predicate: Callable[[list[Received]], Any], timeout: float = 30.0,
                 what: str = "requests") -> Any:
        """Wait until ``predicate(received)`` is truthy; TimeoutError naming ``what`` and what arrived."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                got = [r for r in self.attempts if 200 <= r.status < 300]
                value = predicate(got)
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(r.path, r.title or r.body) for r in got][-10:]
                    raise TimeoutError(f"timed out after {timeout}s waiting for {what}; received {seen}")
                self._lock.wait(min(left, 0.2))

    def __enter__(self) -> RecordingReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------- in-process daemons


def runtime(daemon: Any) -> Any:
    """The alerts plugin's per-daemon runtime."""
    return daemon.hooks.pm.get_plugin("alerts").runtime


async def raise_everywhere(daemons: dict[str, Any], labels: dict[str, str], status: str = "firing",
                           annotations: dict[str, str] | None = None) -> None:
    """Every daemon raises (or resolves) the same alert, as peers observing the same fact do."""
    for daemon in daemons.values():
        await daemon.hooks.alert(daemon, Alert(labels=dict(labels), annotations=dict(annotations or {}),
                                               status=status))  # type: ignore[arg-type]


async def drained(daemons: dict[str, Any], timeout: float = 30.0) -> None:
    """Wait until no daemon has anything left in its outbox (every candidate sent, skipped or superseded)."""
    async def empty() -> bool:
        for daemon in daemons.values():
            rt = runtime(daemon)
            depth, _ = await rt.outbox.run(rt.outbox.sync.stats)
            if depth:
                return False
        return True

    await until(empty, timeout, "every outbox to drain")


async def wait_received(rx: RecordingReceiver, predicate: Callable[[list[Any]], Any], timeout: float = 30.0,
                        what: str = "requests") -> Any:
    return await anyio.to_thread.run_sync(partial(rx.wait_for, predicate, timeout, what))
