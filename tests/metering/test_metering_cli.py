"""The CLI's parsing and formatting, and the config checks, without a daemon."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshd.cli import build_parser
from meshd.config import ConfigError
from meshd.i18n import Translator
from meshd.plugins import Hooks
from meshd.testing import write_federation
from meshd_plugins.metering.cli import _number, cmd_record, cmd_usage


def parse(*argv: str) -> object:
    return build_parser(Translator("en"), Hooks.load()).parse_args(list(argv))


def test_usage_and_usage_record_parse_to_their_handlers() -> None:
    query = parse("usage", "--config", "c.yaml", "--tenant", "acme-eu", "--period", "2026-10", "--json")
    assert query.handler is cmd_usage and (query.tenant, query.period, query.json) == ("acme-eu", "2026-10", True)
    record = parse("usage", "--config", "c.yaml", "record", "--tenant", "acme-eu", "--meter", "api_calls",
                   "--value", "1.5")
    assert record.handler is cmd_record
    assert (record.config, record.tenant, record.meter, record.value) == ("c.yaml", "acme-eu", "api_calls", "1.5")


def test_missing_options_exit_2_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    from meshd.cli import main

    assert main(["--lang", "fr", "usage", "--tenant", "acme-eu"]) == 2
    assert "option(s) manquante(s) : --period" in capsys.readouterr().err  # --config has a default


@pytest.mark.parametrize("lang, value, shown", [
    ("en", "1234.50", "1,234.50"),
    ("de", "1234.50", "1.234,50"),
    ("en", "123456789012345678901234567.123456789012345678", "123,456,789,012,345,678,901,234,567.123456789012345678"),
    ("en", "gold", "gold"),
])
def test_totals_are_printed_exactly_in_the_users_locale(lang: str, value: str, shown: str) -> None:
    assert _number(Translator(lang), value) == shown


def test_meters_without_a_tenant_directory_are_a_config_error(tmp_path: Path) -> None:
    configs = write_federation(tmp_path, ["eu-west-1"], "nats://127.0.0.1:4222",
                               patch={"metering": {"meters": {"api_calls": {"kind": "SUM"}}}})
    with pytest.raises(ConfigError, match="metering.meters.*tenant directory"):
        Hooks.load().load_config(configs["eu-west-1"])


def test_bad_metering_settings_name_their_key(tmp_path: Path) -> None:
    configs = write_federation(tmp_path, ["eu-west-1"], "nats://127.0.0.1:4222",
                               patch={"metering": {"meters": {"api_calls": {"kind": "AVERAGE"}},
                                                   "dedup_retention": "7d"}})
    with pytest.raises(ConfigError) as exc:
        Hooks.load().load_config(configs["eu-west-1"])
    text = str(exc.value)
    assert "metering.meters.api_calls.kind" in text and "metering.dedup_retention" in text
