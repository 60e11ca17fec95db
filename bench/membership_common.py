"""Shared parts of the membership benchmarks: meshd logs, a Serf harness, a CPU hog, the machine.

Serf runs the way ../shared/bench/serf_detect.sh runs it (N agents on
loopback, default LAN profile, one event-handler script per agent that
stamps each event with `date +%s.%N`), but from Python so that one script
can kill, restart and count over many rounds.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from benchlib import machine_line as machine  # noqa: E402, F401  (after the path set-up; the membership benches import it from here)


def summary(values: Sequence[float]) -> dict[str, float]:
    vals = sorted(values)
    if not vals:
        return {"n": 0}
    return {"n": len(vals), "min": vals[0], "median": statistics.median(vals), "max": vals[-1],
            "mean": statistics.fmean(vals)}


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (paste-able into bench/results/membership.md)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


# ---------------------------------------------------------------- meshd logs


@dataclass(frozen=True)
class Transition:
    ts: float
    observer: str
    region: str
    previous: str
    state: str


def _epoch(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def transitions(log_dir: Path) -> list[Transition]:
    """Every ``<region>: <prev> -> <state>`` line the membership plugins logged, oldest first."""
    out = []
    for path in sorted(log_dir.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            logger, msg = rec.get("logger", ""), rec.get("msg", "")
            if not logger.endswith(".membership") or " -> " not in msg or ": " not in msg:
                continue
            region, rest = msg.split(": ", 1)
            if rest.startswith("health "):
                continue  # a health change, not a state transition
            previous, _, tail = rest.partition(" -> ")
            observer = logger.split(".")[1]
            out.append(Transition(_epoch(rec["ts"]), observer, region, previous, tail.split(" ", 1)[0]))
    return sorted(out, key=lambda t: t.ts)


# ---------------------------------------------------------------- CPU hog


@contextlib.contextmanager
def cpu_hog(processes: int | None = None) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Saturate every core with busy loops (same priority as the daemons) while the block runs."""
    count = processes or os.cpu_count() or 2
    # Each loop ends by itself once its parent is gone, so a bench killed without cleanup
    # (SIGTERM, SIGKILL) leaves no busy loop behind to skew whatever runs next.
    loop = "import os\nparent = os.getppid()\nwhile os.getppid() == parent: pass"
    procs = [subprocess.Popen([sys.executable, "-c", loop], start_new_session=True)
             for _ in range(count)]
    try:
        yield procs
    finally:
        for p in procs:
            p.kill()
            p.wait()


# ---------------------------------------------------------------- Serf


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SerfCluster:
    """N `serf agent` processes on loopback with event handlers that stamp each event."""

    def __init__(self, workdir: Path, n: int = 7, binary: str | None = None):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.n = n
        self.binary = binary or shutil.which("serf") or "/usr/bin/serf"
        self.bind = [_free_port() for _ in range(n)]
        self.rpc = [_free_port() for _ in range(n)]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        for i in range(n):
            handler = self.dir / f"h{i}.sh"
            handler.write_text(f'#!/bin/sh\nwhile read line; do echo "$(date +%s.%N) $SERF_EVENT $line" '
                               f'>> {self.dir}/ev{i}.log; done\n')
            handler.chmod(0o755)

    def start_agent(self, i: int, join: int | None = None) -> None:
        cmd = [self.binary, "agent", "-node", f"n{i}", "-bind", f"127.0.0.1:{self.bind[i]}",
               "-rpc-addr", f"127.0.0.1:{self.rpc[i]}",
               "-event-handler", f"member-failed,member-leave,member-join={self.dir}/h{i}.sh"]
        if join is not None:
            cmd += ["-join", f"127.0.0.1:{self.bind[join]}"]
        log = open(self.dir / f"a{i}.log", "ab")
        self.procs[i] = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        log.close()

    def start(self, timeout: float = 60) -> None:
        for i in range(self.n):
            self.start_agent(i, None if i == 0 else 0)
            time.sleep(0.2)
        self.wait_converged(timeout)

    def alive_seen_by(self, i: int) -> int:
        try:
            out = subprocess.run([self.binary, "members", "-rpc-addr", f"127.0.0.1:{self.rpc[i]}", "-status",
                                  "alive"], capture_output=True, text=True, timeout=5).stdout
        except subprocess.TimeoutExpired:
            return -1
        return sum(1 for line in out.splitlines() if line.strip())

    def wait_converged(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.alive_seen_by(i) == self.n for i in range(self.n) if self.running(i)):
                return
            time.sleep(0.2)
        raise TimeoutError("serf agents did not converge")

    def running(self, i: int) -> bool:
        p = self.procs.get(i)
        return p is not None and p.poll() is None

    def kill(self, i: int) -> float:
        t = time.time()
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait()
        return t

    def leave(self, i: int) -> float:
        t = time.time()
        subprocess.run([self.binary, "leave", "-rpc-addr", f"127.0.0.1:{self.rpc[i]}"], capture_output=True,
                       timeout=30)
        self.procs[i].wait(30)
        return t

    def events(self, i: int, kind: str, node: str) -> list[float]:
        path = self.dir / f"ev{i}.log"
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[1] == kind and parts[2] == node:
                out.append(float(parts[0]))
        return out

    def wait_events(self, kind: str, node: int, after: float, timeout: float = 60) -> list[float]:
        """Per survivor, the first ``kind`` event about ``node`` after ``after``; waits for all of them."""
        survivors = [i for i in range(self.n) if i != node and self.running(i)]
        deadline = time.monotonic() + timeout
        while True:
            firsts = []
            for i in survivors:
                times = [t for t in self.events(i, kind, f"n{node}") if t >= after]
                if times:
                    firsts.append(min(times))
            if len(firsts) == len(survivors) or time.monotonic() > deadline:
                return firsts
            time.sleep(0.05)

    def count(self, kind: str) -> int:
        return sum(1 for i in range(self.n) for line in ((self.dir / f"ev{i}.log").read_text().splitlines()
                   if (self.dir / f"ev{i}.log").exists() else []) if line.split()[1:2] == [kind])

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
