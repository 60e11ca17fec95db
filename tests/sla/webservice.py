"""A loopback HTTP service for the sla tests: answers are set per request by the test, so schedules count requests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Scheduled(BaseHTTPRequestHandler):
    """Answers each request by the next entry of the server's plan: (status, delay seconds)."""

    server: ScheduledServer

    def do_GET(self) -> None:
        started = time.monotonic()
        status, delay = self.server.next_answer()
        if delay:
            time.sleep(delay)
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
        with self.server.lock:
            # What the service itself took, oversleeping under load included: the part of a probe's latency
            # that is the service's, not the probe's.
            self.server.took.append((started, status, time.monotonic() - started))

    def log_message(self, *args: object) -> None:
        pass


class ScheduledServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Scheduled)
        self.lock = threading.Lock()
        self.plan: list[tuple[int, float]] = []
        self.default = (200, 0.0)
        self.served = 0
        self.log: list[tuple[float, int, float]] = []
        """(wall time the answer was decided, status, delay) of every request."""
        self.took: list[tuple[float, int, float]] = []
        """(monotonic start, status, seconds the service took) of every request answered."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/healthz"

    def next_answer(self) -> tuple[int, float]:
        with self.lock:
            answer = self.plan.pop(0) if self.plan else self.default
            self.served += 1
            self.log.append((time.time(), *answer))
            return answer

    def schedule(self, *phases: tuple[int, int, float]) -> None:
        """Queue ``count`` answers of (status, delay) per phase; after them, the default answer."""
        with self.lock:
            for count, status, delay in phases:
                self.plan.extend([(status, delay)] * count)

    def pending(self) -> int:
        with self.lock:
            return len(self.plan)


@contextmanager
def scheduled_server() -> Iterator[ScheduledServer]:
    server = ScheduledServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
