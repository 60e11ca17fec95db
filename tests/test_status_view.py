"""`meshd status` in plain text tells the truth: every region, current health, failovers in force.

Real daemons on a real nats-server; the failover is the one the membership and
failover plugins commit after a SIGKILL.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from meshd.cli import main
from meshd.testing import LocalFederation, english_words, leftover_english

ROOT = Path(__file__).resolve().parent.parent
REGIONS = ["eu-west-1", "eu-central-1", "us-east-1"]

pytestmark = pytest.mark.nats


def status(config: Path, capsys: pytest.CaptureFixture[str], lang: str = "en") -> str:
    capsys.readouterr()
    assert main(["--lang", lang, "status", "--config", str(config)]) == 0
    return capsys.readouterr().out


def row(output: str, region: str) -> str:
    [line] = [line for line in output.splitlines() if line.startswith(region + " ")]
    return line


def test_status_lists_every_region_current_health_and_failovers(
        tmp_path: Path, local_federation: Callable[..., LocalFederation], capsys: pytest.CaptureFixture[str]) -> None:
    dr = yaml.safe_load((ROOT / "etc" / "dr_config.yaml").read_text())
    dr["regions"] = {"eu-west-1": {"pair": "eu-central-1"}, "eu-central-1": {"pair": "eu-west-1"}, "us-east-1": {}}
    (tmp_path / "dr_config.yaml").write_text(yaml.safe_dump(dr))
    fed = local_federation(regions=REGIONS, daemons=False, shared_files=[tmp_path / "dr_config.yaml"],
                           config={"plugins": {"disabled": ["alerts", "metering", "keys"]},
                                   "failover": {"hold_down": "2m"}})
    config = fed.config_path("eu-west-1")

    # us-east-1 is configured but has not started: a row says so.
    for region in ("eu-west-1", "eu-central-1"):
        fed.start_daemon(region)
    fed.wait_for(lambda: fed.member_state("eu-west-1", "eu-central-1") == "alive", what="eu-central-1 alive")
    out = status(config, capsys)
    assert [line.split()[0] for line in out.splitlines()[3:]] == sorted(REGIONS)
    assert re.search(r"never heard from\s+-\s+-\s+unknown", row(out, "us-east-1"))
    assert " alive " in row(out, "eu-central-1") and " healthy " in row(out, "eu-central-1")

    # A dead region's health is unknown, and its failover is listed: target, since when, what brings it back.
    fed.start_daemon("us-east-1")
    fed.wait_for(lambda: all(fed.member_state(o, r) == "alive" for o in REGIONS for r in REGIONS if o != r),
                 what="every daemon sees every region alive")
    fed.kill("eu-central-1")
    fed.wait_for(lambda: fed.status("eu-west-1")["failover"]["regions"]["eu-central-1"]["state"] == "failed_over",
                 60, what="eu-central-1 failed over")
    doc = fed.status("eu-west-1")
    [decision] = [d for d in doc["decisions"] if d["region"] == "eu-central-1"]
    last_said = {m["region"]: m for m in doc["members"]}["eu-central-1"]
    assert last_said["state"] == "dead"
    out = status(config, capsys)
    assert re.search(r"\bdead\b.*\bunknown\b", row(out, "eu-central-1"))
    assert "healthy" not in row(out, "eu-central-1")  # whatever it said last
    assert "Failovers in force:" in out
    assert ("eu-central-1 failed over to eu-west-1 since " in out and f"(term {decision['term']})" in out)
    assert "failback: automatic once eu-central-1 has been alive for 2 minutes" in out

    # The same view in German and Arabic: nothing left in English.
    for lang in ("de", "ar"):
        out = status(config, capsys, lang)
        assert len(out.splitlines()) == 9  # header, table head and rule, 3 regions, 3 failover lines
        words = english_words(lang, "cli.status.", "cli.member_state.", "cli.health.", "cli.failover.",
                              "cli.daemon_state.")
        assert {"healthy", "alive", "dead", "unknown", "failed", "since"} <= words
        assert leftover_english(out, words) == [], out
    assert "umgeschaltet auf eu-west-1" in status(config, capsys, "de")
