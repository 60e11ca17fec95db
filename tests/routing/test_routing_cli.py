"""``meshd route`` against running daemons: live answers, JSON shape, languages, exit codes, offline mode."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

import meshd
from meshd.cli import main
from meshd.members import Member, MemberState
from meshd.natsserver import NatsServer, free_port
from meshd.testing import BUILTIN_PLUGINS, LocalFederation, running_daemons, write_federation

ROOT = Path(__file__).resolve().parents[2]
OTHERS = [p for p in BUILTIN_PLUGINS if p != "routing"]
EU = ["eu-west-1", "eu-central-1"]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_route_command_against_a_real_daemon_process(
        local_federation: Callable[..., LocalFederation], capsys: pytest.CaptureFixture[str]) -> None:
    fed = local_federation(daemons=False, shared_files=[ROOT / "etc" / "tenants.yaml"],
                           config={"plugins": {"disabled": OTHERS}})
    fed.start_daemon("eu-west-1")
    config = str(fed.config_path("eu-west-1"))

    code, out, _ = run_cli(capsys, "route", "--config", config, "--tenant", "acme-eu", "--from", "DE", "--json")
    reply = json.loads(out)
    assert code == 0
    assert {k: reply[k] for k in ("ok", "tenant", "from", "region", "reason", "residency", "answered_by", "view")} == {
        "ok": True, "tenant": "acme-eu", "from": "DE", "region": "eu-central-1", "reason": "home",
        "residency": "EU", "answered_by": "eu-west-1", "view": "live"}
    assert reply["latency_source"] == "estimated" and 0 < reply["latency_ms"] < 50

    # A continent or macro-region is a client location (the seed's `--from europe`).
    code, out, _ = run_cli(capsys, "route", "--config", config, "--tenant", "bistro-fr", "--from", "europe", "--json")
    reply = json.loads(out)
    assert code == 0 and (reply["from"], reply["region"], reply["residency"]) == ("europe", "eu-central-1", "EU")
    code, out, _ = run_cli(capsys, "route", "--config", config, "--tenant", "bistro-fr", "--from", "North America")
    assert code == 0 and "bistro-fr from North America -> eu-" in out   # never outside the residency

    code, out, _ = run_cli(capsys, "--lang", "fr", "route", "--config", config, "--tenant", "globex-us",
                           "--from=-33.9,151.2")
    assert code == 0 and "globex-us depuis -33.9,151.2 -> us-east-1" in out and "région d'attache" in out

    code, _, err = run_cli(capsys, "route", "--config", config, "--tenant", "nobody", "--from", "DE")
    assert code == 2 and "nobody" in err and "--sovereignty" in err
    code, _, err = run_cli(capsys, "--lang", "de", "route", "--config", config, "--tenant", "acme-eu",
                           "--from", "Atlantis")
    assert code == 2 and "Atlantis ist kein Standort" in err and "north-america" in err
    code, _, err = run_cli(capsys, "route", "--config", config, "--tenant", "acme-eu", "--from", "DE",
                           "--sovereignty", "us")
    assert code == 2 and "must stay in EU" in err

    # Daemon gone: a plain failure with the way out, and --offline answers from the files.
    assert fed.stop_daemon("eu-west-1") == 0
    code, _, err = run_cli(capsys, "route", "--config", config, "--tenant", "acme-eu", "--from", "DE")
    assert code == 1 and "--offline" in err
    code, out, _ = run_cli(capsys, "route", "--config", config, "--tenant", "acme-eu", "--from", "DE",
                           "--offline", "--json")
    assert code == 0 and json.loads(out)["view"] == "offline" and json.loads(out)["region"] == "eu-central-1"


def test_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    configs = write_federation(tmp_path, EU, "nats://127.0.0.1:4222",
                               patch={"routing": {"rtt": {"FR": {"mars-1": 3}}}})
    code, _, err = run_cli(capsys, "route", "--config", str(configs["eu-west-1"]), "--tenant", "t", "--from", "FR",
                           "--offline")
    assert code == 2 and "routing.rtt.FR.mars-1" in err


@pytest.mark.anyio
async def test_route_command_reflects_live_failover_decisions(
        tmp_path: Path, nats_server: NatsServer, capsys: pytest.CaptureFixture[str]) -> None:
    tenants = yaml.safe_load((ROOT / "etc" / "tenants.yaml").read_text())["tenants"]
    (tmp_path / "tenants.yaml").write_text(yaml.safe_dump(
        {"tenants": {k: v for k, v in tenants.items() if v["residency"] == "EU"}}))
    configs = write_federation(tmp_path, EU, nats_server.url, patch={"http": {"port": free_port()}})
    async with running_daemons({"eu-west-1": configs["eu-west-1"]}, blocked=OTHERS) as ds:
        d = ds["eu-west-1"]
        argv = ["route", "--config", str(configs["eu-west-1"]), "--tenant", "acme-eu", "--from", "DE", "--json"]

        async def cli(*extra: str) -> tuple[int, Any]:
            code = await anyio.to_thread.run_sync(main, argv + list(extra))
            out, err = capsys.readouterr()
            return code, json.loads(out) if out.strip() else err

        code, reply = await cli()
        assert code == 0 and reply["region"] == "eu-central-1"
        await d.hooks.failover_committed(d, meshd.Decision("eu-central-1", 2, "failover", "eu-west-1",
                                                           ("eu-west-1",), 0.0, "eu-west-1"))
        code, reply = await cli()
        assert code == 0 and (reply["region"], reply["reason"]) == ("eu-west-1", "failover")
        # The offline answer does not know the decision, and says so.
        code, reply = await cli("--offline")
        assert reply["region"] == "eu-central-1" and reply["view"] == "offline"

        await d.hooks.member_changed(d, Member("eu-west-1", MemberState.ALIVE, health="down"), None)
        code, reply = await cli()
        assert code == 1 and reply["error"] == "no_eligible_region"
        # The text form goes to stderr, translated, naming each exclusion.
        text_argv = ["--lang", "es"] + [a for a in argv if a != "--json"]
        code = await anyio.to_thread.run_sync(main, text_argv)
        _, err_text = capsys.readouterr()
        assert code == 1 and "ninguna región de EU" in err_text and "eu-central-1 (conmutada)" in err_text
        assert "eu-west-1 (caída)" in err_text


@pytest.mark.parametrize("lang", ["en", "fr", "es", "de", "ar"])
def test_every_reason_exclusion_and_latency_source_is_translated(lang: str) -> None:
    from meshd.i18n import catalog
    from meshd_plugins.routing.engine import EXCLUDED_REASONS, REASONS

    keys = ({f"routing.reason.{r}" for r in REASONS} | {f"routing.excluded.{r}" for r in EXCLUDED_REASONS}
            | {f"routing.latency_source.{s}" for s in ("measured", "configured", "estimated")})
    assert keys <= set(catalog(lang)), sorted(keys - set(catalog(lang)))
