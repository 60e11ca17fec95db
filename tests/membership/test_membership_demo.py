"""`meshd demo`, end to end: the README's first command, and Ctrl-C leaving nothing behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

pytestmark = pytest.mark.nats

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "LANG": "C.UTF-8", "MESHD_LANG": "en", "PYTHONUNBUFFERED": "1"}


def _processes_under(directory: str, but: int = -1) -> list[psutil.Process]:
    """Processes whose command line names ``directory`` (the demo's daemons and nats-server)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if proc.pid != but and any(directory in part for part in proc.info["cmdline"] or ()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_demo_kill_once() -> None:
    run = subprocess.run([sys.executable, "-m", "meshd", "demo", "--kill", "eu-west-1", "--once", "--timeout", "60"],
                         capture_output=True, text=True, timeout=150, env=ENV, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"every survivor marks eu-west-1 dead \([\d.]+ s after the kill\)", run.stdout), run.stdout
    # Then what the federation does: the committed failover, read from the daemons' /status ...
    failover = re.search(r"failover committed: eu-west-1 -> eu-central-1 in term \d+, [\d.]+ s after the kill "
                         r"\(voters: ([a-z0-9, -]+)\)", run.stdout)
    assert failover, run.stdout
    voters = failover.group(1).split(", ")
    assert len(voters) >= 4 and "eu-west-1" not in voters, voters  # a quorum of 7, without the dead region
    # ... and an EU tenant's route from the dead region's doorstep, before and after, from /v1/route.
    routes = re.findall(r"route for bistro-fr \(EU\) from eu-west-1: ([a-z0-9-]+), (.+) \(answered by", run.stdout)
    assert routes == [("eu-west-1", "the nearest eligible region"),
                      ("eu-central-1", "the committed failover target")], run.stdout
    order = [run.stdout.index(marker) for marker in ("sent SIGKILL", "every survivor marks", "failover committed")]
    assert order == sorted(order), run.stdout
    rows = {line.split()[0]: line.split()[1:] for line in run.stdout.splitlines()
            if line.split() and line.split()[0] in ("eu-west-1", "us-east-1")}
    # The killed region's row: dead in every survivor's column, (down) in its own.
    assert sorted(set(rows["eu-west-1"])) == ["(down)", "dead"], run.stdout
    workdir = re.search(r"daemons in (\S+)", run.stdout).group(1)
    assert not _processes_under(workdir), "the demo left processes running"
    assert not Path(workdir).exists(), "the demo's temporary directory was not removed"


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# A shell's background job starts with SIGINT ignored; the demo must still stop on Ctrl-C.
@pytest.mark.parametrize("started_with", [None, _ignore_sigint], ids=["sigint-default", "sigint-ignored"])
def test_demo_ctrl_c_stops_everything(tmp_path: Path, started_with: Any) -> None:
    source = yaml.safe_load((ROOT / "etc" / "region_map.yaml").read_text())
    source["regions"] = {r: source["regions"][r] for r in ("us-east-1", "eu-west-1", "ca-central-1")}
    regions = tmp_path / "three.yaml"
    regions.write_text(yaml.safe_dump(source))
    workdir = tmp_path / "demo"
    proc = subprocess.Popen([sys.executable, "-m", "meshd", "demo", "--regions", str(regions), "--dir", str(workdir)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV, cwd=ROOT,
                            preexec_fn=started_with)
    try:
        lines = []
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "converged" in line:
                break
        assert any("converged" in line for line in lines), "".join(lines)
        assert len(_processes_under(str(workdir), but=proc.pid)) == 4  # nats-server and three daemons
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "stopping the federation" in out
    # Without a terminal the live table is never drawn, so it is printed once at the end.
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()
            and line.split()[0] in ("us-east-1", "eu-west-1", "ca-central-1")}
    assert "region \\ seen by" in out and set(rows) == {"us-east-1", "eu-west-1", "ca-central-1"}, out
    assert sorted(set(rows["eu-west-1"])) == ["(self)", "alive"], out
    assert not _processes_under(str(workdir)), "Ctrl-C left processes running"
