"""The systemd notify protocol, written straight to ``$NOTIFY_SOCKET``.

No libsystemd binding: the protocol is one datagram of ``KEY=VALUE`` lines
to a unix socket (an abstract one when the path starts with ``@``).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping


class Notifier:
    """Sends READY=1, RELOADING=1, STOPPING=1, WATCHDOG=1, STATUS=... to systemd.

    Without ``NOTIFY_SOCKET`` (not run by systemd) every call is a no-op.
    """

    def __init__(self, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET") or None
        if path and path.startswith("@"):
            path = "\0" + path[1:]
        self.address = path
        self._watchdog_usec = self._parse_watchdog(env)
        self._sock: socket.socket | None = None

    @staticmethod
    def _parse_watchdog(env: Mapping[str, str]) -> int | None:
        try:
            usec = int(env.get("WATCHDOG_USEC", ""))
        except ValueError:
            return None
        pid = env.get("WATCHDOG_PID")
        if pid and pid != str(os.getpid()):
            return None  # the watchdog is meant for another process (a wrapper)
        return usec if usec > 0 else None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings: half of WatchdogSec, as sd_watchdog_enabled(3) advises."""
        return self._watchdog_usec / 2e6 if self._watchdog_usec else None

    def notify(self, *lines: str) -> bool:
        """Send ``lines`` as one datagram; False when there is no socket or sending failed."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(lines).encode(), self.address)
            return True
        except OSError:
            return False

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) match the reload.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
