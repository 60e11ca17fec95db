"""The systemd unit: Type=notify, a template on /etc/meshd/%i.yaml, hardened to exposure <= 2.0."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from meshd.config import default_state_dir, validate_daemon_source
from meshd.yamlsource import parse_yaml

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "meshd@.service"
INGEST_UNIT = ROOT / "systemd" / "meshd-ingest@.service"
UNITS = [UNIT, INGEST_UNIT]


def unit(path: Path = UNIT) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
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


def instance_value(key: str, instance: str) -> str:
    """A [Service] setting with the instance specifier %i expanded, as systemd does for meshd@<instance>."""
    return unit()["Service"][key].replace("%i", instance)


def config_of(instance: str) -> Path:
    """The config file ExecStart hands the instance's daemon."""
    match = re.search(r"\brun --config (\S+)", instance_value("ExecStart", instance))
    assert match, unit()["Service"]["ExecStart"]
    return Path(match.group(1))


def test_the_daemon_keeps_its_state_in_the_units_state_directory() -> None:
    # StateDirectory= is relative to /var/lib for a system unit; systemd creates it owned by User=.
    assert unit()["Service"]["StateDirectory"] == "meshd/%i"
    created = Path("/var/lib") / instance_value("StateDirectory", "eu-west-1")
    config = config_of("eu-west-1")
    assert config == Path("/etc/meshd/eu-west-1.yaml")
    # A config there that names no state_dir gets the unit's directory ...
    assert default_state_dir(config) == created
    source = parse_yaml("federation: acme\nregion: eu-west-1\nidentity: {private_key: keys/eu-west-1.key, "
                        "trust_bundle: trust.yaml}\n", config)
    assert validate_daemon_source(source, {}).state_dir == created
    # ... one elsewhere must name it (no silent default under someone's home directory) ...
    assert default_state_dir(Path("/home/ops/fed/eu-west-1.yaml")) is None
    # ... and the README's install (`meshd init --state-dir ...`) and the sample config write that same directory.
    readme = (ROOT / "README.md").read_text()
    template = re.search(r"--state-dir '([^']+)'", readme)
    assert template and Path(template.group(1).format(region="eu-west-1")) == created, "README's meshd init"
    sample = yaml.safe_load((ROOT / "etc" / "meshd.yaml").read_text())
    assert Path(sample["state_dir"]) == Path("/var/lib") / instance_value("StateDirectory", sample["region"])


def test_the_ingest_worker_unit_runs_meshd_ingest_with_the_daemons_config_state_and_hardening() -> None:
    daemon, ingest = unit()["Service"], unit(INGEST_UNIT)["Service"]
    assert ingest["Type"] == "notify"
    assert re.search(r"/meshd ingest --config /etc/meshd/%i\.yaml$", ingest["ExecStart"]), ingest["ExecStart"]
    assert ingest["ExecStartPre"] == daemon["ExecStartPre"]
    assert unit(INGEST_UNIT)["Unit"]["ConditionPathExists"] == "/etc/meshd/%i.yaml"
    # The ledger shards are in the daemon's state directory: the same one, the same user.
    for key in ("StateDirectory", "User", "Group", "UMask", "WatchdogSec", "KillSignal", "Restart"):
        assert ingest[key] == daemon[key], key
    hardening = {k: v for k, v in daemon.items() if k.startswith(("Protect", "Private", "Restrict", "System",
                                                                   "Capability", "NoNewPrivileges", "Lock",
                                                                   "MemoryDeny", "DevicePolicy"))}
    assert len(hardening) > 15
    assert {k: ingest.get(k) for k in hardening} == hardening


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_systemd_analyze_verify_finds_nothing_to_say(tmp_path: Path, path: Path) -> None:
    # verify checks that every command exists: point them at this interpreter instead of /opt/meshd.
    text = path.read_text().replace("/opt/meshd/bin/meshd", sys.executable)
    assert text != path.read_text()
    instance = tmp_path / path.name.replace("@", "@eu-west-1")
    instance.write_text(text)
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", str(instance)], capture_output=True, text=True,
                          timeout=60)
    # Unknown keys and unparsable values are only warnings (exit 0): any output is a finding.
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), proc.stdout + proc.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_hardening_exposure_is_at_most_2(path: Path) -> None:
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", str(path)], capture_output=True,
                          text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout + proc.stderr)
    assert match, proc.stdout + proc.stderr
    assert float(match.group(1)) <= 2.0, proc.stdout
