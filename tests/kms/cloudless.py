"""Endpoints for the providers whose KMS has no local server: a closed port, and one that never answers."""

from __future__ import annotations

import functools
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from meshd.natsserver import free_port


def closed_port() -> int:
    """A loopback port nothing listens on: connections to it are refused at once."""
    return free_port()


@contextmanager
def silent_port() -> Iterator[int]:
    """A loopback port that completes TCP handshakes (the kernel's backlog) and never says a byte.

    A KMS behind a black-holing firewall or a hung proxy: only the client's
    own timeouts end a request to it.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]
    finally:
        sock.close()


@functools.cache
def imported_by_loading_plugins() -> frozenset[str]:
    """Every module that loading the installed meshd plugins imports, in a fresh interpreter (once per run)."""
    code = "import json, sys; from meshd.plugins import Hooks; Hooks.load(); print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return frozenset(json.loads(out.stdout.strip().splitlines()[-1]))


def imported_after_loading_plugins(prefixes: tuple[str, ...]) -> list[str]:
    """The modules under ``prefixes`` that loading every installed meshd plugin imports."""
    return sorted(m for m in imported_by_loading_plugins() if m.startswith(prefixes))
