"""uvicorn inside the daemon's event loop, as a supervised service with readiness and a bounded stop."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import anyio
import uvicorn
from anyio.abc import TaskStatus


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals to the daemon and tells when it listens."""

    def __init__(self, config: uvicorn.Config):
        super().__init__(config)
        self.listening = anyio.Event()
        self.finished = anyio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the daemon owns SIGTERM/SIGHUP
        yield

    def install_signal_handlers(self) -> None:  # older uvicorn names
        return None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.listening.set()


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say they are
    # TCP, and with Nagle on, a response written in two parts waits out the client's delayed ACK (40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def make_config(app: Any, *, tls: Any, grace: float) -> uvicorn.Config:
    return uvicorn.Config(
        app, lifespan="off", log_config=None, access_log=False, server_header=False, date_header=True,
        proxy_headers=False, timeout_graceful_shutdown=max(1, int(grace)),
        ssl_certfile=str(tls.cert_file) if tls else None, ssl_keyfile=str(tls.key_file) if tls else None,
        h11_max_incomplete_event_size=16 * 1024,
    )


async def serve(server: EmbeddedServer, sock: socket.socket,
                task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    """Serve until ``server.should_exit``; started once the socket accepts connections."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(_run, server, sock)
        await server.listening.wait()
        task_status.started()


async def _run(server: EmbeddedServer, sock: socket.socket) -> None:
    try:
        await server.serve(sockets=[sock])
    finally:
        server.finished.set()
        sock.close()
