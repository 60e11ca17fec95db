"""The ``health`` config section: every mistake is named by probe, key and line; exit 2; nothing leaks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from meshd import hookimpl
from meshd.cli import main
from meshd.config import ConfigError
from meshd.plugins import Hooks
from meshd.testing import write_federation
from meshd_plugins.health.settings import resolve_probes

from .probe_plugin import FlagProbePlugin

TCP = {"name": "api", "kind": "tcp", "host": "127.0.0.1", "port": 8080}


def config_with(tmp_path: Path, health: dict[str, Any] | None) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    configs = write_federation(tmp_path, ["eu-west-1", "us-east-1"], "nats://127.0.0.1:4222")
    path = configs["eu-west-1"]
    if health is not None:
        data = yaml.safe_load(path.read_text())
        data["health"] = health
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["check-config", str(path)])
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text
    return code, text


def line_of(path: Path, needle: str) -> int:
    """The line of ``needle``'s first occurrence (``needle#2``: its second)."""
    text, _, nth = needle.partition("#")
    hits = [i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line]
    assert len(hits) >= int(nth or 1), f"{needle!r} not in {path}"
    return hits[int(nth or 1) - 1]


def test_a_valid_health_section_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config_with(tmp_path, {"probes": [
        TCP,
        {"name": "web", "kind": "http", "url": "https://127.0.0.1:8443/healthz", "expect_status": [200, "3xx"],
         "latency_warning": "300ms", "latency_critical": "2s", "severity": "critical"},
        {"name": "queue", "kind": "command", "command": "/usr/lib/nagios/plugins/check_queue -w 10",
         "timeout": "3s", "fail_after": 2, "recover_after": 4},
        {"name": "root", "kind": "disk", "path": "/", "warning": 80, "critical": 90},
    ], "verdict": {"warning_probes": {"critical": "down"}}})
    code, text = check(path, capsys)
    assert code == 0, text


@pytest.mark.parametrize(("probes", "key", "needle", "says"), [
    # The example of the issue: the third probe's timeout.
    ([TCP, {**TCP, "name": "b"}, {**TCP, "name": "c", "timeout": "soon"}],
     "health.probes[2].timeout", "timeout: soon", "not a duration"),
    ([{**TCP, "kind": "tcpp"}], "health.probes[0].kind", "kind: tcpp", "unknown probe kind 'tcpp'"),
    ([{"name": "api", "kind": "tcp", "host": "db"}], "health.probes[0].port", "kind: tcp", "required key is missing"),
    ([{**TCP, "port": 70000}], "health.probes[0].port", "port: 70000", "must be at most 65535"),
    ([{**TCP, "hostname": "x"}], "health.probes[0].hostname", "hostname: x", "unknown key"),
    ([TCP, {**TCP, "port": 9}], "health.probes[1].name", "name: api#2", "already used by health.probes[0]"),
    ([{"name": "c", "kind": "cpu", "warning": 95, "critical": 90}], "health.probes[0].warning", "warning: 95",
     "above critical"),
    ([{**TCP, "fail_after": 0}], "health.probes[0].fail_after", "fail_after: 0", "must be at least 1"),
    ([{**TCP, "severity": "panic"}], "health.probes[0].severity", "severity: panic", "must be one of: 'warning', 'critical'"),
    ([{**TCP, "name": "has space"}], "health.probes[0].name", "name: has space", "does not have the expected form (pattern"),
    ([{"name": "w", "kind": "http", "url": "ftp://example.org/"}], "health.probes[0].url", "url: ftp",
     "not an http:// or https:// URL"),
    ([{"name": "w", "kind": "http", "url": "http://a/", "expect_status": ["2xy"]}],
     "health.probes[0].expect_status[0]", "2xy", "not a status code"),
    ([{"name": "x", "kind": "command", "command": []}], "health.probes[0].command", "command: []",
     "the command is empty"),
])
def test_each_mistake_names_its_probe_key_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   probes: list[dict[str, Any]], key: str, needle: str,
                                                   says: str) -> None:
    path = config_with(tmp_path, {"probes": probes})
    code, text = check(path, capsys)
    assert code == 2
    line = line_of(path, needle)
    # "port is missing" has no line of its own: it is reported on its probe's nearest written key.
    assert f"{path}:" in text and f"{key}:" in text and says in text, text
    if "missing" not in says:
        assert f"{path}:{line}: {key}:" in text, text


def test_a_verdict_rule_must_be_a_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config_with(tmp_path, {"verdict": {"critical_probes": {"critical": "sideways"}}})
    code, text = check(path, capsys)
    assert code == 2
    assert f"{path}:{line_of(path, 'sideways')}: health.verdict.critical_probes.critical:" in text


def test_credentials_in_a_url_are_refused_without_being_echoed(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = config_with(tmp_path, {"probes": [
        {"name": "w", "kind": "http", "url": "https://ops:hunter2-secret@db.internal/health"}]})
    code, text = check(path, capsys)
    assert code == 2 and "health.probes[0].url" in text and "headers" in text
    assert "hunter2-secret" not in text


def test_several_mistakes_are_all_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config_with(tmp_path, {"probes": [{**TCP, "kind": "nope"}, {**TCP, "name": "b", "port": 0}]})
    code, text = check(path, capsys)
    assert code == 2
    assert "health.probes[0].kind" in text and "health.probes[1].port" in text


def test_a_kind_from_another_plugin_is_validated_with_its_own_model(tmp_path: Path) -> None:
    path = config_with(tmp_path, {"probes": [{"name": "f", "kind": "flag", "flag": "x"}]})
    with pytest.raises(ConfigError, match=r"unknown probe kind 'flag'"):
        Hooks.load().load_config(path)
    config = Hooks.load(extra=[("flagprobe", FlagProbePlugin())]).load_config(path)
    assert config.plugin("health").probes[0].kind == "flag"

    bad = config_with(tmp_path / "bad", {"probes": [{"name": "f", "kind": "flag", "flagg": "x"}]})
    with pytest.raises(ConfigError) as caught:
        Hooks.load(extra=[("flagprobe", FlagProbePlugin())]).load_config(bad)
    assert {".".join(map(str, i.keypath)) for i in caught.value.issues} >= {"health.probes.0.flagg"}


def test_without_a_section_the_host_is_probed(tmp_path: Path) -> None:
    hooks = Hooks.load()
    config = hooks.load_config(config_with(tmp_path, None))
    probes, issues = resolve_probes(config, hooks.probe_kinds())
    assert not issues
    assert [(p.settings.name, p.settings.kind) for p in probes] == [
        ("cpu", "cpu"), ("memory", "memory"), ("disk", "disk"), ("load", "load")]


def test_an_empty_probe_list_means_no_probes(tmp_path: Path) -> None:
    hooks = Hooks.load()
    config = hooks.load_config(config_with(tmp_path, {"probes": []}))
    assert resolve_probes(config, hooks.probe_kinds()) == ([], [])


def test_meshd_health_without_a_running_daemon_fails_plainly(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = config_with(tmp_path, None)
    data = yaml.safe_load(path.read_text())
    data["http"] = {"port": 1}  # nothing listens there
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert main(["health", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "cannot reach the meshd daemon of eu-west-1 at http://127.0.0.1:1: connection refused" in err
    assert "Traceback" not in err and "Errno" not in err


class NotAProbePlugin:
    @hookimpl
    def meshd_probe_kinds(self) -> dict[str, type]:
        return {"broken": dict}


def test_a_plugin_kind_that_is_not_a_probe_is_a_config_error(tmp_path: Path) -> None:
    path = config_with(tmp_path, {"probes": [{"name": "b", "kind": "broken"}]})
    with pytest.raises(ConfigError, match=r"health.probes\[0\].kind: probe kind 'broken' .* not a .*Probe subclass"):
        Hooks.load(extra=[("notaprobe", NotAProbePlugin())]).load_config(path)
