"""``meshd tenants import | list | show`` against a real nats-server, and the YAML directory's errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from meshd.cli import main
from meshd.config import ConfigError, load_config
from meshd.natsserver import NatsServer
from meshd.tenantdir import TenantDirectory
from meshd.tenantyaml import YamlTenantDirectory
from meshd.testing import write_federation

ROOT = Path(__file__).resolve().parents[2]
REGIONS = ["eu-west-1", "us-east-1"]


def kv_configs(tmp_path: Path, url: str) -> dict[str, Path]:
    return write_federation(tmp_path, REGIONS, url, patch={"tenants": {"registry": "kv"}})


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_import_is_idempotent_and_list_show_read_the_registry(tmp_path: Path, nats_server: NatsServer,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    configs = kv_configs(tmp_path, nats_server.url)
    eu, us = str(configs["eu-west-1"]), str(configs["us-east-1"])
    sample = ROOT / "etc" / "tenants.yaml"
    expected = yaml.safe_load(sample.read_text())["tenants"]
    usable = {k: v for k, v in expected.items() if v["residency"] in ("EU", "US")}
    source = tmp_path / "tenants.yaml"
    source.write_text(yaml.safe_dump({"tenants": usable}))

    code, out, err = run(capsys, "--lang", "en", "tenants", "import", str(source), "--config", eu)
    assert code == 0, err
    assert f"{len(usable)} created, 0 updated, 0 unchanged" in out
    us_with_customer = [k for k, v in usable.items() if v["residency"] == "US" and ("country" in v or "vat_id" in v)]
    if us_with_customer:
        assert "from a region of US" in out

    code, out, _ = run(capsys, "tenants", "list", "--json", "--config", eu)
    first = {t["id"]: t for t in json.loads(out)}
    assert set(first) == set(usable)

    # The same file again: nothing written, no revision moves.
    code, out, _ = run(capsys, "--lang", "en", "tenants", "import", str(source), "--config", eu)
    assert code == 0 and f"0 created, 0 updated, {len(usable)} unchanged" in out
    code, out, _ = run(capsys, "tenants", "list", "--json", "--config", eu)
    assert {t["id"]: t["revision"] for t in json.loads(out)} == {k: t["revision"] for k, t in first.items()}

    # The US region stores its tenants' customer data; the EU copy shows EU customer fields only.
    code, out, _ = run(capsys, "--lang", "en", "tenants", "import", str(source), "--config", us)
    assert code == 0 and "0 created" in out
    eu_tenant = next(k for k, v in usable.items() if v["residency"] == "EU" and "country" in v)
    code, out, _ = run(capsys, "tenants", "show", eu_tenant, "--json", "--config", eu)
    assert code == 0 and json.loads(out)["country"] == usable[eu_tenant]["country"]
    code, out, _ = run(capsys, "tenants", "show", eu_tenant, "--json", "--config", us)
    assert code == 0 and "country" not in json.loads(out) and "vat_id" not in json.loads(out)

    code, out, _ = run(capsys, "--lang", "fr", "tenants", "show", eu_tenant, "--config", eu)
    assert code == 0 and "résidence: EU" in out
    code, out, err = run(capsys, "--lang", "de", "tenants", "show", "t_nobody", "--config", eu)
    assert code == 2 and "t_nobody" in err and "Mandantenverzeichnis" in err
    code, out, _ = run(capsys, "--lang", "en", "tenants", "list", "--status", "suspended", "--config", eu)
    assert code == 0 and out.strip() == "no tenants"
    code, out, _ = run(capsys, "--lang", "en", "tenants", "list", "--config", eu)
    assert code == 0 and out.splitlines()[0].split()[:3] == ["ID", "NAME", "PARTNER"]
    assert len(out.splitlines()) == len(usable) + 1


def test_import_refuses_a_bad_file_naming_file_line_and_field(tmp_path: Path, nats_server: NatsServer,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    eu = str(kv_configs(tmp_path, nats_server.url)["eu-west-1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("tenants:\n  ok-one: {residency: EU}\n  broken:\n    residency: europe\n")
    code, _, err = run(capsys, "--lang", "en", "tenants", "import", str(bad), "--config", eu)
    assert code == 2 and f"{bad}:4: tenants.broken.residency" in err
    nowhere = tmp_path / "nowhere.yaml"
    nowhere.write_text("tenants:\n  far: {residency: SG}\n")
    code, _, err = run(capsys, "--lang", "en", "tenants", "import", str(nowhere), "--config", eu)
    assert code == 2 and "tenants.far.residency" in err and "SG" in err
    code, out, _ = run(capsys, "tenants", "list", "--json", "--config", eu)
    assert code == 0 and json.loads(out) == []  # nothing of either file was written


def test_the_registry_unreachable_is_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from meshd.natsserver import free_port

    eu = str(kv_configs(tmp_path, f"nats://127.0.0.1:{free_port()}")["eu-west-1"])
    code, _, err = run(capsys, "--lang", "en", "tenants", "list", "--config", eu)
    assert code == 1 and "cannot read the tenant registry" in err


def test_the_yaml_directory_is_read_only_and_its_errors_are_unchanged(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    configs = write_federation(tmp_path, REGIONS, "nats://127.0.0.1:4222")
    tenants = tmp_path / "federation" / "tenants.yaml"
    tenants.write_text("tenants:\n  acme: {residency: EU, home: eu-west-1, country: DE}\n  bob: {residency: US}\n")
    data = yaml.safe_load(configs["eu-west-1"].read_text())
    data["tenants"] = str(tenants)
    configs["eu-west-1"].write_text(yaml.safe_dump(data))
    config = load_config(configs["eu-west-1"])
    directory = config.tenants
    assert isinstance(directory, YamlTenantDirectory) and isinstance(directory, TenantDirectory)
    assert directory.read_only and directory.tenants["acme"].id == "acme"
    assert directory.residency_regions("acme", config.region_map) == ["eu-west-1"]
    code, out, _ = run(capsys, "tenants", "list", "--json", "--config", str(configs["eu-west-1"]))
    assert code == 0 and [t["id"] for t in json.loads(out)] == ["acme", "bob"]
    code, _, err = run(capsys, "--lang", "en", "tenants", "import", str(tenants), "--config",
                       str(configs["eu-west-1"]))
    assert code == 2 and "tenants: {registry: kv}" in err

    tenants.write_text("tenants:\n  acme:\n    residency: EU\n    home: eu-west-1\n  x:\n    residency: eu\n")
    with pytest.raises(ConfigError) as bad:
        load_config(configs["eu-west-1"])
    assert [str(i) for i in bad.value.issues] == [
        f"{tenants}:6: tenants.x.residency: does not have the expected form (pattern ^[A-Z]{{2}}$)"]
    tenants.write_text("tenants:\n  acme:\n    residency: EU\n    home: us-east-1\n")
    with pytest.raises(ConfigError) as bad:
        load_config(configs["eu-west-1"])
    assert "tenants.acme.home: home 'us-east-1' is not a region in EU" in str(bad.value.issues[0])


def test_a_bad_registry_setting_names_its_key(tmp_path: Path) -> None:
    configs = write_federation(tmp_path, REGIONS, "nats://127.0.0.1:4222",
                               patch={"tenants": {"registry": "kv", "placement": {"ZZ": ["zz"]}}})
    with pytest.raises(ConfigError) as bad:
        load_config(configs["eu-west-1"])
    assert any("tenants.placement.ZZ" in str(i) and "ZZ" in str(i) for i in bad.value.issues)
    configs = write_federation(tmp_path, REGIONS, "nats://127.0.0.1:4222",
                               patch={"tenants": {"registry": "kv", "replicaz": 3}})
    with pytest.raises(ConfigError) as bad:
        load_config(configs["eu-west-1"])
    assert [i.keypath for i in bad.value.issues] == [("tenants", "replicaz")]
