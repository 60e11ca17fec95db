"""The systemd notify protocol against a real datagram socket."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

from meshd.sdnotify import Notifier


def test_messages_reach_a_path_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(5)
        n = Notifier({"NOTIFY_SOCKET": str(path)})
        assert n.enabled
        assert n.ready("ready: region x")
        assert server.recv(4096) == b"READY=1\nSTATUS=ready: region x"
        assert n.reloading()
        reload_msg = server.recv(4096).decode().splitlines()
        assert reload_msg[0] == "RELOADING=1" and reload_msg[1].startswith("MONOTONIC_USEC=")
        assert int(reload_msg[1].split("=")[1]) > 0
        n.stopping()
        assert server.recv(4096) == b"STOPPING=1"
        n.watchdog()
        assert server.recv(4096) == b"WATCHDOG=1"
        n.close()


def test_messages_reach_an_abstract_socket() -> None:
    name = f"meshd-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        server.settimeout(5)
        Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert server.recv(4096) == b"READY=1"


def test_without_a_socket_everything_is_a_no_op() -> None:
    n = Notifier({})
    assert not n.enabled
    assert n.ready() is False and n.watchdog() is False
    assert n.watchdog_interval() is None


def test_a_vanished_socket_does_not_raise(tmp_path: Path) -> None:
    assert Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")}).ready() is False


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval() == 15.0
    assert Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}).watchdog_interval() == 15.0
    # Meant for another process: not ours to ping.
    assert Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}).watchdog_interval() is None
    assert Notifier({"WATCHDOG_USEC": "nonsense"}).watchdog_interval() is None
