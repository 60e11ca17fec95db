"""host.*: the daemon's user, the state directory's modes, the systemd unit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from meshd.natsserver import NatsServer
from meshd_plugins.audit.checks.host import INSTALLED_UNITS, MAX_EXPOSURE, parse_exposure, systemd_present, unit_name

from .conftest import daemons, run_check

pytestmark = pytest.mark.anyio
SHIPPED_UNIT = Path(__file__).resolve().parents[2] / "systemd" / "meshd@.service"
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


async def test_systemd_exposure_without_systemd_or_a_unit_file(tmp_path: Path, nats_server: NatsServer) -> None:
    async with daemons(tmp_path, nats_server.url, blocked=BLOCK) as running:
        result = await run_check("host.systemd_exposure", running["eu-west-1"])
    if not systemd_present() and not any(p.is_file() for p in INSTALLED_UNITS):
        assert result.status == "not_applicable" and "no meshd unit file is installed" in result.detail
    else:
        assert result.status in ("pass", "fail"), result.detail


def need_systemd_analyze() -> None:
    if shutil.which("systemd-analyze") is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing: .ci/run installs the systemd package")
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")


def weakened(unit: Path, into: Path) -> Path:
    """The unit with its hardening removed: every line from the hardening comment on, and the umask."""
    lines = unit.read_text().splitlines()
    cut = next(i for i, line in enumerate(lines) if line.startswith("# Hardening"))
    kept = [line for line in lines[:cut] if not line.startswith("UMask=")]
    into.write_text("\n".join(kept + [line for line in lines[cut:] if line.startswith("[")]) + "\n")
    return into


@pytest.mark.parametrize("hardened", [True, False], ids=["shipped", "weakened"])
async def test_the_unit_file_is_rated_offline_by_the_real_systemd_analyze(
        tmp_path: Path, nats_server: NatsServer, hardened: bool) -> None:
    need_systemd_analyze()
    unit = SHIPPED_UNIT if hardened else weakened(SHIPPED_UNIT, tmp_path / "meshd@.service")
    async with daemons(tmp_path, nats_server.url, blocked=BLOCK, patch={"audit": {"systemd_unit": str(unit)}}) as running:
        result = await run_check("host.systemd_exposure", running["eu-west-1"])
    assert result.evidence["mode"] == "offline" and result.evidence["unit_file"] == str(unit)
    assert "--offline=true" in result.evidence["command"]
    exposure = result.evidence["exposure"]
    if hardened:
        assert result.status == "pass", result.detail
        assert exposure < MAX_EXPOSURE
    else:
        assert result.status == "fail", result.detail
        assert exposure >= MAX_EXPOSURE and f"want below {MAX_EXPOSURE}" in result.detail


async def test_a_configured_unit_file_that_is_missing_fails(tmp_path: Path, nats_server: NatsServer) -> None:
    need_systemd_analyze()
    missing = tmp_path / "nowhere" / "meshd@.service"
    async with daemons(tmp_path, nats_server.url, blocked=BLOCK,
                       patch={"audit": {"systemd_unit": str(missing)}}) as running:
        result = await run_check("host.systemd_exposure", running["eu-west-1"])
    if unit_name() is None or not systemd_present():
        assert result.status == "fail" and f"audit.systemd_unit {missing} is not a file" in result.detail


def test_exposure_line_is_read_from_systemd_analyze_output() -> None:
    out = "  NAME  DESCRIPTION  EXPOSURE\n...\n→ Overall exposure level for meshd@eu-west-1.service: 2.1 OK :-)\n"
    assert parse_exposure(out) == (2.1, "OK")
    assert parse_exposure("Failed to get unit") is None
