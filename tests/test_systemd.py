"""The systemd unit: Type=notify, a template on /etc/meshd/%i.yaml, hardened to exposure <= 2.0."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "meshd@.service"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser


def test_the_unit_is_a_notify_template_reading_etc_meshd() -> None:
    service = unit()["Service"]
    assert service["Type"] == "notify"
    assert "/etc/meshd/%i.yaml" in service["ExecStart"] and " run " in service["ExecStart"]
    assert "check-config /etc/meshd/%i.yaml" in service["ExecStartPre"]
    assert service["StateDirectory"] == "meshd/%i"
    assert int(service["WatchdogSec"]) > 0
    assert service["ExecReload"].endswith("kill -HUP $MAINPID")
    assert service["User"] == "meshd"


def test_the_unit_state_dir_matches_what_the_daemon_expects() -> None:
    # The daemon keeps state in the config's state_dir; the README tells ops to
    # set it to the StateDirectory systemd creates.
    readme = (UNIT.parent.parent / "README.md").read_text()
    assert "/var/lib/meshd/" in readme


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_hardening_exposure_is_at_most_2() -> None:
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)], capture_output=True,
                          text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout + proc.stderr)
    assert match, proc.stdout + proc.stderr
    assert float(match.group(1)) <= 2.0, proc.stdout
