"""SIGTERM ends a daemon cleanly whatever its bus is doing: gone, frozen, black-holed or never there.

A real ``meshd run`` process and a real nats-server; the daemon's stdout and
stderr both go to its log file, so a traceback printed at exit shows there.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from meshd.testing import LocalFederation

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
