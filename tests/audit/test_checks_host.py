"""host.*: the daemon's user, the state directory's modes, the systemd unit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from meshd.natsserver import NatsServer
from meshd_plugins.audit.checks.host import parse_exposure, systemd_present

from .conftest import daemons, run_check

pytestmark = pytest.mark.anyio
BLOCK = ("health", "membership", "failover", "routing", "alerts", "metering", "billing", "fencing", "partners")


async def test_root_fails_and_an_unprivileged_user_passes(tmp_path: Path, nats_server: NatsServer) -> None:
    async with daemons(tmp_path, nats_server.url, blocked=BLOCK) as running:
        result = await run_check("host.not_root", running["eu-west-1"])
    if os.geteuid() == 0:
        assert result.status == "fail" and "runs as root" in result.detail
        assert result.evidence["euid"] == 0
    # The same check in a process that dropped to nobody (65534), without capabilities.
    # Imported before dropping privileges: nobody may not read the interpreter's files under /root.
    code = ("import os; from meshd_plugins.audit.checks.host import not_root;"
            "os.setgroups([]); os.setgid(65534); os.setuid(65534); r = not_root(None); print(r.status, r.detail)")
    if os.geteuid() == 0:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.startswith("pass the daemon runs as uid 65534"), out


async def test_state_dir_modes(tmp_path: Path, nats_server: NatsServer) -> None:
    async with daemons(tmp_path, nats_server.url, blocked=BLOCK) as running:
        daemon = running["eu-west-1"]
        state = Path(daemon.state_dir)
        state.chmod(0o700)
        result = await run_check("host.state_dir_modes", daemon)
        assert result.status == "pass", result.detail
        assert (state / "keys" / "kek").exists()

        state.chmod(0o755)
        (state / "keys" / "kek").chmod(0o644)
        result = await run_check("host.state_dir_modes", daemon)
        assert result.status == "fail"
        assert f"{state} has mode 0755" in result.detail
        assert "keys/kek 0644" in result.detail
        (state / "keys" / "kek").chmod(0o600)
        state.chmod(0o700)


async def test_systemd_exposure_is_not_applicable_without_systemd(tmp_path: Path, nats_server: NatsServer) -> None:
    async with daemons(tmp_path, nats_server.url, blocked=BLOCK) as running:
        result = await run_check("host.systemd_exposure", running["eu-west-1"])
    if not systemd_present():
        assert result.status == "not_applicable" and "systemd" in result.detail
    else:
        assert result.status in ("not_applicable", "pass", "fail")


def test_exposure_line_is_read_from_systemd_analyze_output() -> None:
    out = "  NAME  DESCRIPTION  EXPOSURE\n...\n→ Overall exposure level for meshd@eu-west-1.service: 2.1 OK :-)\n"
    assert parse_exposure(out) == (2.1, "OK")
    assert parse_exposure("Failed to get unit") is None
