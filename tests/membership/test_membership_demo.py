"""`meshd demo`, end to end: the README's first command, and Ctrl-C leaving nothing behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

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
    rows = {line.split()[0]: line.split()[1:] for line in run.stdout.splitlines()
            if line.split() and line.split()[0] in ("eu-west-1", "us-east-1")}
    # The killed region's row: dead in every survivor's column, (down) in its own.
    assert sorted(set(rows["eu-west-1"])) == ["(down)", "dead"], run.stdout
    workdir = re.search(r"daemons in (\S+)", run.stdout).group(1)
    assert not _processes_under(workdir), "the demo left processes running"
    assert not Path(workdir).exists(), "the demo's temporary directory was not removed"


def test_demo_ctrl_c_stops_everything(tmp_path: Path) -> None:
    source = yaml.safe_load((ROOT / "etc" / "region_map.yaml").read_text())
    source["regions"] = {r: source["regions"][r] for r in ("us-east-1", "eu-west-1", "ca-central-1")}
    regions = tmp_path / "three.yaml"
    regions.write_text(yaml.safe_dump(source))
    workdir = tmp_path / "demo"
    proc = subprocess.Popen([sys.executable, "-m", "meshd", "demo", "--regions", str(regions), "--dir", str(workdir)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV, cwd=ROOT)
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
    assert not _processes_under(str(workdir)), "Ctrl-C left processes running"
