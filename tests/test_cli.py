"""The core CLI: init, keygen, status, reload, translated help."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from meshd.cli import main
from meshd.natsserver import find_nats_server
from meshd.plugins import Hooks
from meshd.testing import LocalFederation, default_regions_file


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_a_complete_federation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fed"
    regions = default_regions_file()
    assert main(["init", "--federation", "acme", "--regions", str(regions), "--nats", "nats://127.0.0.1:4333",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "7 regions" in printed
    # The command to start the bus names the binary found, not a bare name that works only in the venv.
    assert f"{find_nats_server()} -c {out / 'nats-server.conf'}" in printed
    # A fresh federation logs its alerts until real receivers replace the sample's placeholders.
    assert f"alerts: LOG-ONLY. {out / 'alert_routes.yaml'}" in printed
    assert "hc-ping.com" not in yaml.safe_dump(yaml.safe_load((out / "alert_routes.yaml").read_text()))
    names = list(yaml.safe_load(regions.read_text())["regions"])
    hooks = Hooks.load()
    trust = yaml.safe_load((out / "trust.yaml").read_text())
    assert trust["federation"] == "acme" and set(trust["keys"]) == set(names)
    ports = []
    for region in names:
        assert mode(out / "keys" / f"{region}.key") == 0o600
        assert mode(out / "secrets" / f"{region}.nats-password") == 0o600
        config = hooks.load_config(out / f"{region}.yaml")  # each one is valid as written, plugin sections too
        assert set(config.plugin("metering").meters) == {"api_requests", "storage_gb_hours", "active_users"}
        assert config.region == region and config.daemon.nats.user == region
        ports.append(config.daemon.http.port)
        assert config.daemon.state_dir == out / "state" / region
    # One local HTTP port per region, counting up from 7420: none on node_exporter's 9100
    # nor anywhere in the exporters' range.
    assert ports == list(range(7420, 7427))
    assert not any(9100 <= port <= 9999 for port in ports)
    assert mode(out / "nats-server.conf") == 0o600
    conf = (out / "nats-server.conf").read_text()
    assert '"meshd.acme.*.eu-west-1"' in conf and "allow_responses: true" in conf
    # The real nats-server accepts the generated config.
    check = subprocess.run([find_nats_server(), "-t", "-c", str(out / "nats-server.conf")], capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    # A second init must not silently replace the keys.
    assert main(["init", "--federation", "acme", "--regions", str(regions), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err


def test_init_reports_a_bad_region_map(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "regions.yaml"
    bad.write_text("regions:\n  eu-west-1:\n    location: Dublin\n    jurisdiction: EU\n")
    assert main(["init", "--federation", "acme", "--regions", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:" in err and "regions.eu-west-1.coordinates" in err


def test_keygen(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "k" / "x.key"
    assert main(["keygen", "--out", str(key), "--region", "eu-west-1"]) == 0
    assert mode(key) == 0o600
    printed = capsys.readouterr().out
    # The entry is printed as trust.yaml writes it: YAML to paste under keys:.
    entry = yaml.safe_load(printed.split("\n", 1)[1])
    assert set(entry["eu-west-1"]) == {"key_id", "public_key"} and "{" not in printed
    assert main(["keygen", "--out", str(key)]) == 2
    assert main(["keygen", "--out", str(key), "--force"]) == 0


def test_help_is_translated(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--lang", "fr", "--help"])
    assert "lancer le démon régional" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--lang", "es", "--help"])
    assert "ejecutar el demonio regional" in capsys.readouterr().out


def test_status_and_reload_against_a_running_daemon(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fed = LocalFederation(tmp_path, regions=["eu-west-1", "us-east-1"])
    with fed:
        config = str(fed.config_path("eu-west-1"))
        assert main(["status", "--config", config, "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["region"] == "eu-west-1" and doc["state"] == "ready" and doc["bus"]["connected"] is True
        assert main(["--lang", "de", "status", "--config", config]) == 0
        assert "Region eu-west-1 der Föderation test: bereit, Bus verbunden" in capsys.readouterr().out
        assert main(["reload", "--config", config]) == 0
        assert fed.metric("eu-west-1", "meshd_config_reloads_total", result="ok") == 1
        fed.stop_daemon("eu-west-1")
        assert main(["status", "--config", config]) == 1
        port = fed.http_ports["eu-west-1"]
        assert capsys.readouterr().err == (f"cannot reach the meshd daemon of eu-west-1 at http://127.0.0.1:{port}: "
                                           "connection refused (is it running?)\n")
