"""A real cut: a TCP proxy black-holes one daemon's bus connection; the isolated region fences itself
within ``fencing.after``, stops routing to itself the tenants its sibling can take, says so in its
health, metrics and a RegionFenced page, and lifts the fence after it rejoins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from alerts_receiver import RecordingReceiver

from meshd.testing import LocalFederation

ROOT = Path(__file__).resolve().parents[2]
REGIONS = ["eu-west-1", "eu-central-1", "us-east-1"]
CUT = "eu-west-1"
AFTER, SETTLE = 2.0, 1.0


@pytest.fixture
def pager() -> Iterator[RecordingReceiver]:
    with RecordingReceiver() as rx:
        yield rx


def shared_files(tmp_path: Path, pager: RecordingReceiver) -> list[Path]:
    src = tmp_path / "src"
    src.mkdir()
    tenants = yaml.safe_load((ROOT / "etc" / "tenants.yaml").read_text())["tenants"]
    (src / "tenants.yaml").write_text(yaml.safe_dump(
        {"tenants": {k: v for k, v in tenants.items() if v["residency"] in ("EU", "US")}}))
    (src / "alert_routes.yaml").write_text(yaml.safe_dump({
        "global": {"send_resolved": True},
        "route": {"receiver": "nowhere", "group_by": ["alertname", "region"], "group_wait": "0s",
                  "group_interval": "1s", "repeat_interval": "1h",
                  "routes": [{"matchers": ['alertname="RegionFenced"'], "receiver": "pager"}]},
        "receivers": [{"name": "nowhere"}, {"name": "pager", "urls": [pager.json_url("/page")]}],
    }))
    return [src / "tenants.yaml", src / "alert_routes.yaml"]


RECORDER = """\
import json, os, sys
event = json.load(sys.stdin)
runs = sorted(os.listdir(sys.argv[1]))
with open(os.path.join(sys.argv[1], f"{len(runs):02d}-{event['action']}.json"), "x") as f:
    json.dump({"event": event, "env": {k: v for k, v in os.environ.items() if k.startswith("MESHD_")}}, f)
"""


def command_action(tmp_path: Path) -> tuple[Path, dict[str, Any], Path]:
    """contrib/failover-command installed as ops do, recording fence and unfence runs: (site, config, runs)."""
    site, recorder, runs = tmp_path / "site", tmp_path / "record.py", tmp_path / "runs"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                    str(ROOT / "contrib" / "failover-command")], check=True, timeout=300)
    recorder.write_text(RECORDER)
    runs.mkdir()
    config = {"command": [sys.executable, str(recorder), str(runs)], "timeout": "10s",
              "actions": ["fence", "unfence"]}
    return site, config, runs


def recorded(runs: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(runs.iterdir())]


def route(fed: LocalFederation, tenant: str, origin: str) -> dict[str, Any]:
    code, body = fed.http(CUT, f"/v1/route?tenant={tenant}&from={origin}")
    assert code == 200, body
    return body


def fencing(fed: LocalFederation) -> dict[str, Any]:
    status = fed.status(CUT)
    assert status is not None
    return status["fencing"]


def fenced_alert(fed: LocalFederation) -> str | None:
    """The state of RegionFenced in the alerts plugin of the cut region (None once it forgot it)."""
    code, body = fed.http(CUT, "/v1/alerts")
    assert code == 200, body
    states = [a["state"] for a in body["alerts"] if a["labels"].get("alertname") == "RegionFenced"]
    return states[0] if states else None


def meshd_cli(fed: LocalFederation, site: Path, *args: str) -> str:
    """``meshd ARGS --config <the cut region's config>``'s output; it must exit 0."""
    done = subprocess.run([sys.executable, "-m", "meshd", *args, "--config", str(fed.config_path(CUT))],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(site)})
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_an_isolated_region_fences_itself_and_lifts_the_fence_after_it_rejoins(
        tmp_path: Path, local_federation: Callable[..., LocalFederation], pager: RecordingReceiver) -> None:
    site, action, runs = command_action(tmp_path)
    fed = local_federation(
        regions=REGIONS, proxies=True, shared_files=shared_files(tmp_path, pager), env={"PYTHONPATH": str(site)},
        per_region={CUT: {"failover_command": action}},
        config={"plugins": {"disabled": ["failover", "metering", "keys"]},
                "fencing": {"after": f"{AFTER}s", "settle": f"{SETTLE}s"},
                "alerts": {"dedup": {"lease": 2, "poll": 0.1, "fence_grace": 2, "stagger": 0.5},
                           "deadman": {"enabled": False},
                           "delivery": {"backoff_initial": 0.1, "backoff_max": 0.5}}})
    fed.wait_for(lambda: all(fed.member_state(o, r) == "alive" for o in REGIONS for r in REGIONS if o != r),
                 30, what="every daemon sees every region alive")
    # From its own doorstep, an EU tenant without a home goes to the nearest region: this one.
    assert route(fed, "bistro-fr", CUT)["region"] == CUT
    assert fencing(fed)["fenced"] is False and fed.metric(CUT, "meshd_fenced") == 0

    fed.cut(CUT)
    try:
        fed.wait_for(lambda: fencing(fed)["fenced"], 30, what=f"{CUT} fenced")
        doc = fencing(fed)
        assert doc["reason"] == "isolated" and doc["after_s"] == AFTER and doc["after_source"] == "config"
        # It fenced once it had been isolated for `after`, not before, and did not wait for anything else.
        at = doc["last_change"]["isolated_for_s"]
        assert AFTER <= at < 2 * AFTER, doc

        # Routing: the tenant its sibling can take goes there; the answer says this region is fenced.
        body = route(fed, "bistro-fr", CUT)
        assert body["region"] == "eu-central-1" and body["fenced"] == "isolated" and body["view"] == "stale"
        assert route(fed, "globex-us", "NYC")["region"] == "us-east-1"  # other residencies are untouched

        # Health: the verdict, /healthz and the metric say fenced.
        health = fed.status(CUT)["health"]
        assert health["status"] == "fenced" and health["verdict"] == "healthy"
        assert health["fenced"]["reason"] == "isolated"
        code, healthz = fed.http(CUT, "/healthz")
        [check] = [c for c in healthz["checks"] if c["name"] == "fencing"]
        assert code == 503 and check["ok"] is False and check["reason"] == "isolated"
        assert fed.metric(CUT, "meshd_fenced") == 1
        # The CLI, run like ops do (the config names the contrib plugin's section: it must be importable).
        out = meshd_cli(fed, site, "--lang", "es", "health")
        assert out.splitlines()[0] == "la región eu-west-1 está cercada"
        out = meshd_cli(fed, site, "--lang", "en", "route", "--tenant", "bistro-fr", "--from", CUT)
        assert "bistro-fr from eu-west-1 -> eu-central-1" in out and "the eu-west-1 daemon is fenced" in out
        assert fed.metric(CUT, "meshd_fence_changes_total", fenced="true", reason="isolated") == 1

        # The meshd_region_fenced hook ran the operator's command, once, with the fence on stdin.
        [run] = fed.wait_for(lambda: recorded(runs), 10, what="the fence command")
        assert run["event"] == {"action": "fence", "region": CUT, "reason": "isolated",
                                "federation": fed.federation, "observer": CUT}
        assert run["env"]["MESHD_ACTION"] == "fence" and run["env"]["MESHD_REASON"] == "isolated"

        # The page gets out while the region is cut off from the bus (not from the pager):
        # the alerts plugin sends without its federation-wide dedup once fence_grace is over.
        [page] = pager.wait_for(lambda got: [r for r in got if "Region eu-west-1 fenced itself" in r.title], 30,
                                what="the RegionFenced page")
        assert page.title.startswith("[FIRING:1]") and fenced_alert(fed) == "firing"
        assert "cut off from the federation for longer than the failover decision time" in page.message
    finally:
        fed.heal(CUT)

    fed.wait_for(lambda: not fencing(fed)["fenced"], 30, what=f"{CUT} unfenced after the rejoin")
    doc = fencing(fed)
    assert doc["reason"] == "rejoined" and doc["last_change"]["rejoined_for_s"] >= SETTLE
    body = route(fed, "bistro-fr", CUT)
    assert body["region"] == CUT and "fenced" not in body
    health = fed.status(CUT)["health"]
    assert health["status"] == "healthy" and health["fenced"] is None
    code, _ = fed.http(CUT, "/healthz")
    assert code == 200 and fed.metric(CUT, "meshd_fenced") == 0
    assert fed.metric(CUT, "meshd_fence_changes_total", fenced="false", reason="rejoined") == 1
    fence_run, unfence_run = fed.wait_for(lambda: len(got := recorded(runs)) == 2 and got, 10,
                                          what="the unfence command")
    assert unfence_run["event"]["action"] == "unfence" and unfence_run["event"]["reason"] == "rejoined"
    # The command wrote its file before the daemon saw it exit: wait for the daemon's count.
    fed.wait_for(lambda: fed.metric(CUT, "meshd_failover_command_runs_total", result="ok") == 2, 10,
                 what="both runs counted ok")
    # The alert is resolved: the alerts plugin no longer holds it as firing, and the on-call person
    # hears so, though the page went out while the notification log was out of reach.
    fed.wait_for(lambda: fenced_alert(fed) != "firing", 10, what="RegionFenced resolved")
    pager.wait_for(lambda got: [r for r in got if r.title.startswith("[RESOLVED]") and "fenced itself" in r.title],
                   30, what="the resolved RegionFenced page")


def test_a_failover_committed_while_cut_off_keeps_the_fence_until_the_failback(
        tmp_path: Path, local_federation: Callable[..., LocalFederation], pager: RecordingReceiver) -> None:
    files = shared_files(tmp_path, pager)
    dr = yaml.safe_load((ROOT / "etc" / "dr_config.yaml").read_text())
    dr["regions"] = {"eu-west-1": {"pair": "eu-central-1"}, "eu-central-1": {"pair": "eu-west-1"}, "us-east-1": {}}
    (tmp_path / "src" / "dr_config.yaml").write_text(yaml.safe_dump(dr))
    # fencing.after and settle are left to their defaults: the lan failover decision time and rejoin_grace.
    fed = local_federation(
        regions=REGIONS, proxies=True, shared_files=[files[0], tmp_path / "src" / "dr_config.yaml"],
        config={"plugins": {"disabled": ["alerts", "metering", "keys"]}, "failover": {"hold_down": "3s"}})
    fed.wait_for(lambda: all(fed.member_state(o, r) == "alive" for o in REGIONS for r in REGIONS if o != r),
                 30, what="every daemon sees every region alive")
    assert fencing(fed)["after_s"] == 1.0 and fencing(fed)["settle_s"] == 3.0

    fed.cut(CUT)
    try:
        fed.wait_for(lambda: fencing(fed)["fenced"], 30, what=f"{CUT} fenced")
        # The majority fails it over meanwhile; it cannot know.
        fed.wait_for(lambda: CUT in fed.status("us-east-1")["routing"]["failed_over"], 60,
                     what=f"the failover of {CUT} committed by the others")
    finally:
        fed.heal(CUT)

    # Back, it learns of the failover before its settle time is over, and stays fenced for that reason.
    fed.wait_for(lambda: fencing(fed)["reason"] == "failed_over", 30, what=f"{CUT} fenced as failed over")
    doc = fencing(fed)
    assert doc["fenced"] is True and doc["failover"]["target"] == "eu-central-1"
    body = route(fed, "bistro-fr", CUT)
    assert body["region"] == "eu-central-1" and body["fenced"] == "failed_over"

    # Alive for hold_down in the others' view, it is failed back by quorum, and the fence comes down.
    fed.wait_for(lambda: not fencing(fed)["fenced"], 60, what=f"{CUT} unfenced by the failback")
    assert fencing(fed)["reason"] == "failed_back"
    assert route(fed, "bistro-fr", CUT)["region"] == CUT
    # It never lifted the fence in between (no unfence-then-fence flap when it rejoined).
    assert fed.metric(CUT, "meshd_fence_changes_total", fenced="false", reason="rejoined") == 0
    assert fed.metric(CUT, "meshd_fence_changes_total", fenced="true", reason="isolated") == 1
    assert fed.metric(CUT, "meshd_fence_changes_total", fenced="false", reason="failed_back") == 1
