"""`meshd check-config`: every broken config is named by file, key and line, exit 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from meshd.cli import main
from meshd.config import ConfigError, load_config
from meshd.testing import write_federation

REGIONS = ["eu-west-1", "eu-central-1", "us-east-1"]


@pytest.fixture
def fed(tmp_path: Path) -> dict[str, Path]:
    return write_federation(tmp_path, REGIONS, "nats://127.0.0.1:4222")


def edit_yaml(path: Path, change: Callable[[dict], None]) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["check-config", str(path)])
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text
    return code, text


def test_a_valid_config_passes(fed: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, text = check(fed["eu-west-1"], capsys)
    assert code == 0
    assert "valid" in text and "eu-west-1" in text


def _line_of(path: Path, needle: str) -> int:
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in {path}")


# Each case breaks a fresh federation and names what the error must mention.
def break_yaml_syntax(p: Path) -> list[str]:
    p.write_text(p.read_text().replace("region: eu-west-1", "region: [eu-west-1"))
    return [f"{p}:", "expected"]


def break_unknown_key(p: Path) -> list[str]:
    p.write_text(p.read_text() + "regoin: eu-west-1\n")
    return [f"{p}:{_line_of(p, 'regoin')}:", "regoin", "unknown key"]


def break_wrong_type(p: Path) -> list[str]:
    edit_yaml(p, lambda d: d["http"].update(port="eighty"))
    return [f"{p}:{_line_of(p, 'port:')}:", "http.port"]


def break_port_range(p: Path) -> list[str]:
    edit_yaml(p, lambda d: d["http"].update(port=70000))
    return [f"{p}:{_line_of(p, 'port:')}:", "http.port", "65535"]


def break_bad_nats_url(p: Path) -> list[str]:
    edit_yaml(p, lambda d: d["nats"].update(servers=["http://127.0.0.1:4222"]))
    return ["nats.servers[0]", "not a NATS URL"]


def break_bad_duration(p: Path) -> list[str]:
    edit_yaml(p, lambda d: d["nats"].update(connect_timeout="fast"))
    return ["nats.connect_timeout", "not a duration"]


def break_region_not_in_map(p: Path) -> list[str]:
    edit_yaml(p, lambda d: d.update(region="xx-north-9"))
    return [f"{p}:{_line_of(p, 'region: xx')}:", "region", "xx-north-9", "not in"]


def break_bad_region_name(p: Path) -> list[str]:
    edit_yaml(p, lambda d: d.update(region="EU.West"))
    return ["region", "pattern"]


def break_missing_required(p: Path) -> list[str]:
    edit_yaml(p, lambda d: d.pop("identity"))
    return [f"{p}:", "identity", "required key is missing"]


def break_region_missing_from_trust(p: Path) -> list[str]:
    trust = p.parent / "trust.yaml"
    edit_yaml(trust, lambda d: d["keys"].pop("us-east-1"))
    return [str(trust), "us-east-1", "has no key"]


def break_world_readable_key(p: Path) -> list[str]:
    key = p.parent / "keys" / "eu-west-1.key"
    os.chmod(key, 0o644)
    return [f"{p}:{_line_of(p, 'private_key')}:", "identity.private_key", "chmod 600"]


def break_missing_key_file(p: Path) -> list[str]:
    (p.parent / "keys" / "eu-west-1.key").unlink()
    return ["identity.private_key", "file not found"]


def break_key_of_another_region(p: Path) -> list[str]:
    keys = p.parent / "keys"
    (keys / "eu-west-1.key").write_bytes((keys / "us-east-1.key").read_bytes())
    return ["identity.private_key", "does not match the trust bundle"]


def break_bad_jurisdiction_in_region_map(p: Path) -> list[str]:
    rmap = p.parent / "region_map.yaml"
    edit_yaml(rmap, lambda d: d["regions"]["eu-central-1"].update(jurisdiction="eu"))
    return [f"{rmap}:{_line_of(rmap, 'jurisdiction: eu')}:", "regions.eu-central-1.jurisdiction"]


def break_two_credentials(p: Path) -> list[str]:
    edit_yaml(p, lambda d: d["nats"].update(token="abc", user="eu-west-1", password="secret"))
    return ["nats", "choose one kind of NATS credential"]


def break_trust_of_another_federation(p: Path) -> list[str]:
    trust = p.parent / "trust.yaml"
    edit_yaml(trust, lambda d: d.update(federation="other"))
    return [str(trust), "federation", "'other'"]


def break_duplicate_key(p: Path) -> list[str]:
    p.write_text(p.read_text() + "region: eu-west-1\n")
    return [f"{p}:", "duplicate key 'region'"]


def break_not_utf8(p: Path) -> list[str]:
    p.write_bytes(b"region: \xff\xfe\n")
    return [f"{p}:", "not UTF-8"]


def break_top_level_list(p: Path) -> list[str]:
    p.write_text("- region\n- eu-west-1\n")
    return [f"{p}:1:", "mapping"]


CASES = [
    break_yaml_syntax, break_unknown_key, break_wrong_type, break_port_range, break_bad_nats_url,
    break_bad_duration, break_region_not_in_map, break_bad_region_name, break_missing_required,
    break_region_missing_from_trust, break_world_readable_key, break_missing_key_file,
    break_key_of_another_region, break_bad_jurisdiction_in_region_map, break_two_credentials,
    break_trust_of_another_federation, break_duplicate_key, break_not_utf8, break_top_level_list,
]


@pytest.mark.parametrize("breaker", CASES, ids=lambda f: f.__name__.removeprefix("break_"))
def test_broken_config_is_named_and_exits_2(breaker: Callable[[Path], list[str]], fed: dict[str, Path],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = fed["eu-west-1"]
    expected = breaker(path)
    code, text = check(path, capsys)
    assert code == 2, text
    for fragment in expected:
        assert fragment in text, f"{fragment!r} not in:\n{text}"


def test_all_problems_are_reported_at_once(fed: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    path = fed["eu-west-1"]
    edit_yaml(path, lambda d: (d["http"].update(port="x"), d["nats"].update(connect_timeout="slow"),
                               d.update(colour="blue")))
    code, text = check(path, capsys)
    assert code == 2
    for fragment in ("http.port", "nats.connect_timeout", "colour", "3 problem(s)"):
        assert fragment in text


def test_errors_are_translated(fed: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    path = fed["eu-west-1"]
    path.write_text(path.read_text() + "regoin: x\n")
    assert main(["--lang", "de", "check-config", str(path)]) == 2
    text = capsys.readouterr().err
    assert "unbekannter Schlüssel" in text and "Problem(e) gefunden" in text


def test_relative_paths_resolve_against_the_config_file(fed: dict[str, Path], tmp_path: Path) -> None:
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    old = os.getcwd()
    os.chdir(elsewhere)
    try:
        config = load_config(fed["eu-central-1"])
    finally:
        os.chdir(old)
    assert config.daemon.identity.private_key == fed["eu-central-1"].parent / "keys" / "eu-central-1.key"
    assert set(config.region_map.regions) == set(REGIONS)


def test_plugin_sections_are_validated_with_lines(fed: dict[str, Path]) -> None:
    from meshd.config import StrictModel

    class Greeter(StrictModel):
        times: int = 1

    path = fed["eu-west-1"]
    path.write_text(path.read_text() + "greeter:\n  times: many\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {"greeter": Greeter})
    (issue,) = info.value.issues
    assert issue.keypath == ("greeter", "times") and issue.line == _line_of(path, "times: many")
    path.write_text(path.read_text().replace("times: many", "times: 3"))
    assert load_config(path, {"greeter": Greeter}).plugin("greeter").times == 3


def test_check_config_console_script_prints_no_traceback(fed: dict[str, Path]) -> None:
    path = fed["eu-west-1"]
    path.write_text("region: [unclosed\n")
    proc = subprocess.run([sys.executable, "-m", "meshd", "check-config", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    assert str(path) in proc.stderr


def test_an_absent_plugin_section_resolves_its_default_paths(fed: dict[str, Path]) -> None:
    from meshd.config import RelPath, StrictModel

    class Section(StrictModel):
        file: RelPath = Path("shared.yaml")

    config = load_config(fed["eu-west-1"], {"section": Section})
    assert config.plugin("section").file == fed["eu-west-1"].parent / "shared.yaml"


def test_default_region_map_is_beside_the_config(fed: dict[str, Path], tmp_path: Path) -> None:
    edit_yaml(fed["eu-west-1"], lambda d: d.pop("region_map"))
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        config = load_config(fed["eu-west-1"])
    finally:
        os.chdir(old)
    assert set(config.region_map.regions) == set(REGIONS)


def test_the_sample_config_matches_the_schema_of_core_and_plugins() -> None:
    """etc/meshd.yaml documents every section; it must stay valid as the code changes."""
    from meshd.config import validate_daemon_source
    from meshd.plugins import Hooks
    from meshd.yamlsource import load_yaml

    sample = Path(__file__).resolve().parent.parent / "etc" / "meshd.yaml"
    models = Hooks.load().config_models()
    config = validate_daemon_source(load_yaml(sample), models)
    for section in ("health", "membership", "failover", "routing", "alerts", "keys", "metering"):
        assert section in models and f"\n{section}:" in sample.read_text()
    assert config.region == "eu-west-1"
