"""``meshd sla --watch`` in a real terminal (a pty): the live table follows the history, Ctrl-C ends it cleanly."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from meshd.natsserver import free_port
from meshd.testing import running_daemons, write_federation
from meshd_plugins.sla import Sample

pytestmark = [pytest.mark.anyio, pytest.mark.nats]
REGION = "eu-west-1"
ROW = rf"{REGION}[\s│]+starter[\s│]+1h[\s│]+99.0 % / 1000 ms[\s│]+"
"""A row of the table up to its achieved availability (rich draws the columns with box characters)."""
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """A child process on a pty 200 columns wide, its output accumulated as text without escapes."""

    def __init__(self, argv: list[str]):
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        env = {**os.environ, "COLUMNS": "200", "LINES": "50", "TERM": "xterm-256color"}
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
        os.close(slave)
        self.text = ""

    def read_until(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """Block until ``pattern`` appears in the output after what earlier calls consumed."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.text)
            if m:
                self.text = self.text[m.end():]
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not seen in {timeout} s; output: {self.text[-2000:]!r}")
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the child closed the terminal
                raise AssertionError(f"{pattern!r} not seen before the end; output: {self.text[-2000:]!r}") from None
            self.text += ANSI.sub("", chunk.decode(errors="replace"))

    def drain(self) -> None:
        try:
            while os.read(self.master, 65536):
                pass
        except OSError:
            pass
        os.close(self.master)


async def test_watch_follows_the_history_and_ends_on_sigint(tmp_path: Path, nats_server: Any) -> None:
    configs = write_federation(tmp_path, [REGION], nats_server.url)
    data = yaml.safe_load(configs[REGION].read_text())
    data["http"] = {"port": free_port()}
    data.setdefault("plugins", {})["disabled"] = ["health", "membership", "failover"]  # only the rows written here
    configs[REGION].write_text(yaml.safe_dump(data))
    async with running_daemons(configs, blocked=["health", "membership", "failover"]) as daemons:
        runtime = daemons[REGION].hooks.pm.get_plugin("sla").runtime
        now_ms = int(time.time() * 1000)
        start = now_ms - now_ms % 10_000 - 30 * 60_000
        runtime.store.add([Sample(REGION, start + i * 10_000, 10_000, 10_000.0, 1) for i in range(9)])
        term = Terminal([sys.executable, "-m", "meshd", "--lang", "en", "sla", "--config", str(configs[REGION]),
                         "--period", "1h", "--plan", "starter", "--watch", "--refresh", "0.2"])
        try:
            first = await anyio.to_thread.run_sync(term.read_until, ROW + r"([\d.]+) %")
            assert first.group(1) == "100.000"
            # A tenth of the covered time down: the next refreshes show it, without restarting anything.
            runtime.store.add([Sample(REGION, start + 9 * 10_000, 10_000, 0.0, 1)])
            await anyio.to_thread.run_sync(term.read_until, ROW + r"90\.000 % !")
            term.proc.send_signal(signal.SIGINT)
            code = await anyio.to_thread.run_sync(lambda: term.proc.wait(timeout=20))
        finally:
            if term.proc.poll() is None:
                term.proc.kill()
                term.proc.wait()
            await anyio.to_thread.run_sync(term.drain)
    assert code == 0
    assert "Traceback" not in term.text and "KeyboardInterrupt" not in term.text
