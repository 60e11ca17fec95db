"""`--lang de` and `--lang ar`: status, health, check-config and route leave no English of meshd's own.

Health values, pydantic's common type errors and the route line were English
(or, in Arabic, pointed the wrong way); real daemons on a real nats-server
answer here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from meshd.cli import main
from meshd.i18n import Translator
from meshd.testing import LocalFederation, english_words, leftover_english

ROOT = Path(__file__).resolve().parent.parent
REGIONS = ["eu-west-1", "eu-central-1"]
LANGS = ("de", "ar")
FSI, PDI = "\u2068", "\u2069"

pytestmark = pytest.mark.nats

PYDANTIC_WORDS = {"input", "should", "valid", "integer", "greater", "equal", "expected", "extra", "permitted"}
"""Words of pydantic's own messages ("Input should be a valid integer...")."""

BAD_CONFIG = {
    "http": {"port": "nine-thousand"},       # int_parsing
    "log": {"level": "loud"},                # literal_error
    "bus": {"replay_window": 0},             # greater_than_equal
    "nats": {"connect_timeout": "2s", "max_outstanding_pings": [3]},   # int_type
    "colour": "blue",                        # extra_forbidden
}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(argv))
    got = capsys.readouterr()
    return code, got.out + got.err


def check(output: str, lang: str, *prefixes: str) -> None:
    words = english_words(lang, *prefixes)
    assert words, prefixes  # the check has English to look for
    assert leftover_english(output, words) == [], output


def test_status_health_check_config_and_route_in_german_and_arabic(
        tmp_path: Path, local_federation: Callable[..., LocalFederation], capsys: pytest.CaptureFixture[str]) -> None:
    tenants = yaml.safe_load((ROOT / "etc" / "tenants.yaml").read_text())
    tenants["tenants"] = {k: v for k, v in tenants["tenants"].items() if v["residency"] == "EU"}
    (tmp_path / "tenants.yaml").write_text(yaml.safe_dump(tenants))
    # One probe that passes: a failing probe's error line is English by design (docs/health.md), and
    # the host probes' thresholds depend on how busy the test machine is.
    fed = local_federation(regions=REGIONS, shared_files=[tmp_path / "tenants.yaml"], daemons=False,
                           config={"plugins": {"disabled": ["alerts", "metering", "keys", "failover"]}})
    for region in REGIONS:
        fed.patch_config(region, {"health": {"probes": [
            {"name": "bus", "kind": "tcp", "host": "127.0.0.1", "port": fed.servers[0].port}]}})
        fed.start_daemon(region)
    fed.wait_for(lambda: fed.member_state("eu-west-1", "eu-central-1") == "alive", what="eu-central-1 alive")
    config = str(fed.config_path("eu-west-1"))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**fed.read_config("eu-west-1"), **BAD_CONFIG}))

    code, out = run(capsys, "status", "--config", config)
    assert code == 0 and " healthy " in out
    code, out = run(capsys, "check-config", str(bad))
    assert code == 2
    for expected in ("http.port: must be a whole number", "log.level: must be one of: 'debug', 'info'",
                     "bus.replay_window: must be at least 64", "nats.max_outstanding_pings: must be a whole number",
                     "colour: unknown key"):
        assert expected in out, out

    for lang in LANGS:
        code, out = run(capsys, "--lang", lang, "status", "--config", config)
        assert code == 0
        check(out, lang, "cli.status.", "cli.member_state.", "cli.health.", "cli.daemon_state.")
        assert out.count("gesund" if lang == "de" else "سليمة") == 2

        code, out = run(capsys, "--lang", lang, "health", "--config", config)
        assert code == 0
        check(out, lang, "health.cli.", "health.status.")

        code, out = run(capsys, "--lang", lang, "check-config", str(bad))
        assert code == 2 and len(out.strip().splitlines()) == 6  # five problems and the count
        check(out, lang, "cli.config_error.", "cli.check_config.")
        assert leftover_english(out, PYDANTIC_WORDS) == [], out

        code, out = run(capsys, "--lang", lang, "route", "--config", config, "--tenant", "acme-eu", "--from", "DE")
        assert code == 0
        check(out, lang, "routing.cli.", "routing.reason.", "routing.latency_source.")
    assert "muss eine ganze Zahl sein" in run(capsys, "--lang", "de", "check-config", str(bad))[1]


def test_the_arabic_route_line_reads_right_to_left_without_an_arrow() -> None:
    line = Translator("ar")("routing.cli.routed", tenant="acme-eu", location="DE", region="eu-central-1")
    # An arrow's direction depends on the renderer; the words carry the meaning instead.
    assert not re.search(r"->|<-|[\u2190-\u21ff]", line)
    # The first strong character is Arabic, so a bidi renderer lays the line out right to left...
    assert "\u0600" <= next(c for c in line if c.isalpha()) <= "\u06ff"
    # ...and each value is isolated, so "eu-central-1" is not reordered into "1-eu-central".
    assert [FSI + v + PDI in line for v in ("acme-eu", "DE", "eu-central-1")] == [True, True, True]
    assert line.index("acme-eu") < line.index("DE") < line.index("eu-central-1")
