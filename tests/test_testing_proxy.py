"""meshd.testing.TcpProxy with added latency: delays both ways, keeps byte order, loses what is in flight on a cut."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from meshd.testing import LocalFederation, TcpProxy, wait_for


@pytest.fixture
def echo_server() -> Iterator[int]:
    """A loopback TCP server that sends back whatever it receives; its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield port
    finally:
        listener.close()


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def test_every_byte_waits_at_least_the_low_bound_each_way_and_keeps_its_order(echo_server: int) -> None:
    proxy = TcpProxy(("127.0.0.1", echo_server), latency=(0.05, 0.1), rng=random.Random(3))
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as client:
            began = time.monotonic()
            client.sendall(b"ping")
            assert recv_exactly(client, 4) == b"ping"
            assert time.monotonic() - began >= 0.1       # two crossings of the proxy, 50 ms at least each
            sent = b"".join(b"%05d" % i for i in range(400))
            for i in range(0, len(sent), 5):              # many small chunks, each with its own random delay
                client.sendall(sent[i:i + 5])
            assert recv_exactly(client, len(sent)) == sent
        assert proxy.delayed_chunks >= 2 and proxy.lost_chunks == 0
    finally:
        proxy.close()


def test_bytes_in_flight_when_the_proxy_is_cut_are_lost(echo_server: int) -> None:
    proxy = TcpProxy(("127.0.0.1", echo_server), latency=(1.0, 1.0))
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as client:
            client.sendall(b"lost")
            wait_for(lambda: proxy.held_chunks == 1, timeout=5, what="the chunk to enter the delay line")
            proxy.cut()                                    # well within the second it is held
            wait_for(lambda: proxy.lost_chunks == 1, timeout=10, what="the held chunk to be dropped")
            proxy.heal()                                   # closes what lived through the cut
            assert client.recv(16) == b""                  # end of stream, never the held bytes
        assert proxy.delayed_chunks == 0
    finally:
        proxy.close()


def test_a_bad_latency_range_is_refused(tmp_path: object) -> None:
    with pytest.raises(ValueError, match="latency range"):
        TcpProxy(("127.0.0.1", 1), latency=(0.2, 0.1))
    with pytest.raises(ValueError, match="proxies=True"):
        LocalFederation(tmp_path, regions=["eu-west-1"], latency=(0.05, 0.1))  # type: ignore[arg-type]
