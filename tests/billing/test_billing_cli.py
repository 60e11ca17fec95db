"""``meshd invoice`` without a daemon: missing options, and config checks that name file:line: key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from meshd.cli import main
from meshd.testing import write_federation

ROOT = Path(__file__).resolve().parents[2]
ETC = ROOT / "etc"


def test_missing_options_exit_2_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--lang", "en", "invoice"]) == 2
    assert "missing option(s): --tenant, --period" in capsys.readouterr().err
    assert main(["--lang", "fr", "invoice", "--tenant", "t"]) == 2
    assert "option(s) manquante(s) : --period" in capsys.readouterr().err


def config_with(tmp_path: Path, tenants: str, **billing: str) -> Path:
    path = tmp_path / "tenants.yaml"
    path.write_text(tenants)
    section = {"matrix": str(ETC / "billing_matrix.yaml"), "tax_rates": str(ETC / "tax_rates.yaml"),
               "fx_rates": str(ETC / "fx_rates.yaml"), **billing}
    patch = {"tenants": str(path), "billing": section,
             "metering": {"meters": {"api_requests": {"kind": "COUNT"}, "storage_gb_hours": {"kind": "SUM"},
                                     "active_users": {"kind": "UNIQUE_COUNT"}}}}
    regions = list(yaml.safe_load((ETC / "region_map.yaml").read_text())["regions"])
    return write_federation(tmp_path, regions, "nats://127.0.0.1:4222", patch=patch)["eu-west-1"]


def test_the_sample_files_pass_check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = config_with(tmp_path, (ETC / "tenants.yaml").read_text())
    assert main(["--lang", "en", "check-config", str(config)]) == 0, capsys.readouterr().err


def test_a_tenant_that_cannot_be_invoiced_is_a_config_error(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    tenants = ("tenants:\n"
               "  a:\n"
               "    residency: EU\n"
               "    country: DE\n"
               "    currency: EUR\n"
               "    plan: platinum\n"
               "    vat_id: DE12\n"
               "  b: {residency: EU, country: US, subdivision: OR, currency: JPY, plan: starter}\n")
    config = config_with(tmp_path, tenants)
    assert main(["--lang", "en", "check-config", str(config)]) == 2
    err = capsys.readouterr().err
    tenants_file = tmp_path / "tenants.yaml"
    assert f"{tenants_file}:6: tenants.a.plan: plan 'platinum' is not in billing_matrix.yaml" in err
    assert f"{tenants_file}:7: tenants.a.vat_id: 'DE12' is not a well-formed EU VAT ID" in err
    assert f"{tenants_file}:8: tenants.b.currency: currency 'JPY' is not invoiced" in err
    assert f"{tenants_file}:8: tenants.b.subdivision: tax jurisdiction US-OR is not configured" in err


def test_a_meter_the_metering_plugin_does_not_have_is_a_config_error(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    matrix = yaml.safe_load((ETC / "billing_matrix.yaml").read_text())
    matrix["plans"]["starter"]["included"]["bandwidth_gb"] = "10"
    (tmp_path / "billing_matrix.yaml").write_text(yaml.safe_dump(matrix))
    config = config_with(tmp_path, "tenants: {}\n", matrix=str(tmp_path / "billing_matrix.yaml"))
    assert main(["--lang", "en", "check-config", str(config)]) == 2
    assert "plans.starter.included.bandwidth_gb: meter 'bandwidth_gb' is not a meter of the metering plugin" in \
        capsys.readouterr().err
