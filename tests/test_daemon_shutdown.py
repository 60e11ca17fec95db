"""SIGTERM ends a daemon cleanly whatever its bus is doing: gone, frozen, black-holed or never there.

A real ``meshd run`` process and a real nats-server; the daemon's stdout and
stderr both go to its log file, so a traceback printed at exit shows there.
"""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import nats
import pytest

from meshd.natsserver import NatsServer
from meshd.testing import LocalFederation
from meshd.transport import CLOSE_DISCONNECT_TIMEOUT, CLOSE_FLUSH_TIMEOUT, close_connection

REGION = "eu-west-1"
PROMISED_STOP = 5.0
"""Seconds the README promises between SIGTERM and exit."""


def _server_killed(fed: LocalFederation) -> None:
    fed.servers[0].kill()
    fed.wait_for(lambda: "bus connection lost" in fed.log_text(REGION), what="the loss to be noticed")


def _server_frozen(fed: LocalFederation) -> None:
    # Still holding the TCP connection, never answering: the client believes it is connected.
    fed.servers[0].proc.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]


def _path_black_holed(fed: LocalFederation) -> None:
    fed.cut(REGION)


def _never_connected(fed: LocalFederation) -> None:
    pass  # the server was stopped before the daemon started


@pytest.mark.parametrize("break_bus", [_server_killed, _server_frozen, _path_black_holed, _never_connected],
                         ids=["server-killed", "server-frozen", "path-black-holed", "never-connected"])
def test_sigterm_exits_cleanly_whatever_the_bus_does(local_federation: Callable[..., LocalFederation],
                                                     break_bus: Callable[[LocalFederation], None]) -> None:
    fed = local_federation(regions=[REGION], daemons=False, proxies=True)
    server = fed.servers[0]
    try:
        if break_bus is _never_connected:
            server.stop()
            fed.start_daemon(REGION, wait=False)
            fed.wait_for(lambda: "bus connect attempt" in fed.log_text(REGION), what="a failed connect attempt")
        else:
            fed.start_daemon(REGION)
        break_bus(fed)
        code = fed.stop_daemon(REGION, timeout=PROMISED_STOP)
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.send_signal(signal.SIGCONT)
    log = fed.log_text(REGION)
    assert code == 0, f"exit {code} (-9: still running {PROMISED_STOP}s after SIGTERM)\n{log[-3000:]}"
    assert "received SIGTERM" in log and "state: stopped" in log, log[-3000:]
    assert "never retrieved" not in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert '"level": "error"' not in log, log[-3000:]


@pytest.mark.anyio
@pytest.mark.parametrize("deadline_passed", [False, True], ids=["in-time", "deadline-passed"])
async def test_a_connection_to_a_frozen_server_closes_in_bounded_time(nats_server: NatsServer,
                                                                      deadline_passed: bool) -> None:
    """What the daemon's transport and the metering SDK use: no hang, no error left for asyncio to report."""
    reported: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    nc = await nats.connect(nats_server.url, allow_reconnect=False)
    received = anyio.Event()

    async def handler(_msg: Any) -> None:
        received.set()

    await nc.subscribe("work", cb=handler)
    await nc.publish("work", b"x")
    with anyio.fail_after(5):
        await received.wait()
    nats_server.proc.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
    try:
        with anyio.fail_after(CLOSE_FLUSH_TIMEOUT + CLOSE_DISCONNECT_TIMEOUT + 1):
            if deadline_passed:
                with anyio.CancelScope() as scope:
                    scope.cancel()
                    await close_connection(nc)
            else:
                await close_connection(nc)
    finally:
        nats_server.proc.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
    assert nc.is_closed
    gc.collect()  # asyncio reports a never-retrieved exception when the future is collected
    await anyio.lowlevel.checkpoint()
    assert not reported, reported
