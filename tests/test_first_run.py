"""What a new operator gets from `meshd init`: metering that records at once, alerts that stay home.

Real daemons on a real nats-server, started from what `meshd init` writes
(``samples=True``: the sample meters, the routing file in log-only mode).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
import yaml
from alerts_receiver import RecordingReceiver
from prometheus_client.parser import text_string_to_metric_families

from meshd.bootstrap import SAMPLE_METERS
from meshd.cli import main
from meshd.logonly import log_only_routes
from meshd.testing import LocalFederation

ROOT = Path(__file__).resolve().parent.parent
ETC = ROOT / "etc"
TENANT = "acme-eu"  # EU residency: both regions below may store its usage

pytestmark = pytest.mark.nats


def metric_total(fed: LocalFederation, region: str, name: str) -> float:
    """The sum of every sample of ``name`` (all label values) on the region's /metrics."""
    status, text = fed.http(region, "/metrics")
    assert status == 200
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == name)


def record(config: Path, meter: str, value: str = "1") -> int:
    return main(["usage", "record", "--config", str(config), "--tenant", TENANT, "--meter", meter,
                 "--value", value])


def consuming(fed: LocalFederation, region: str) -> Callable[[], Any]:
    return lambda: ((fed.status(region) or {}).get("metering") or {}).get("consumer", {}).get("running")


def test_init_meters_are_the_sample_configs_meters() -> None:
    sample = yaml.safe_load((ETC / "meshd.yaml").read_text())["metering"]
    assert yaml.safe_load(SAMPLE_METERS)["metering"] == sample


def test_log_only_copy_keeps_everything_but_the_urls() -> None:
    source = (ETC / "alert_routes.yaml").read_text()
    copy = log_only_routes(source)
    original, written = yaml.safe_load(source), yaml.safe_load(copy)
    assert all(r["urls"] == [] for r in written["receivers"])
    assert {k: v for k, v in written.items() if k != "receivers"} == {
        k: v for k, v in original.items() if k != "receivers"}
    # The placeholders stay in the file, commented, where the operator fills them in.
    assert '# urls: ["slack://TokenA/TokenB/TokenC/#ops"]' in copy and "LOG-ONLY" in copy
    # Block lists (items even at the key's own column) and flow-style receivers are emptied too.
    block = "receivers:\n  - name: a\n    urls:\n    - json://x\n    lang: de\n  - {name: b, urls: [json://y]}\n"
    assert yaml.safe_load(log_only_routes(block))["receivers"] == [
        {"name": "a", "urls": [], "lang": "de"}, {"name": "b", "urls": []}]
    # A {secret: NAME} is each region's own URL, not a placeholder: kept.
    mixed = "receivers:\n  - name: a\n    urls: [{secret: pager}]\n  - name: b\n    urls:\n      - json://x\n"
    written = log_only_routes(mixed)
    assert "    urls: [{secret: pager}]\n" in written and "    #   - json://x\n" in written
    assert yaml.safe_load(written)["receivers"] == [{"name": "a", "urls": [{"secret": "pager"}]},
                                                    {"name": "b", "urls": []}]


def test_a_fresh_init_federation_meters_at_once_and_sends_no_alert(
        local_federation: Callable[..., LocalFederation], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # The sample tenants of the two regions' jurisdiction (the others name regions not started here).
    tenants = yaml.safe_load((ETC / "tenants.yaml").read_text())
    tenants["tenants"] = {k: v for k, v in tenants["tenants"].items() if v["residency"] == "EU"}
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "tenants.yaml").write_text(yaml.safe_dump(tenants))
    fed = local_federation(regions=["eu-west-1", "eu-central-1"], samples=True, daemons=False,
                           shared_files=[tmp_path / "src" / "tenants.yaml", ETC / "alert_routes.yaml"])
    # eu-central-1 starts without meters, as an operator who removed them would.
    bare = fed.read_config("eu-central-1")
    del bare["metering"]
    fed.write_config("eu-central-1", bare)
    for region in fed.regions:
        fed.start_daemon(region)
    west, central = fed.config_path("eu-west-1"), fed.config_path("eu-central-1")

    # Metering: the sample meters record usage as soon as the consumer runs.
    fed.wait_for(consuming(fed, "eu-west-1"), what="eu-west-1's usage consumer")
    capsys.readouterr()
    assert record(west, "api_requests") == 0
    assert "recorded" in capsys.readouterr().out
    assert fed.metric("eu-west-1", "meshd_metering_events_accepted_total") == 1

    # No meters: refused, and /status says why without listing meters it does not use.
    assert record(central, "api_requests") == 1
    assert "no meters configured (add them under metering.meters, then meshd reload)" in capsys.readouterr().err
    metering = fed.status("eu-central-1")["metering"]
    assert metering["state"] == "disabled" and metering["meters"] == {}

    # A reload that adds meters starts metering, no restart.
    bare["metering"] = {"meters": {"api_requests": {"kind": "COUNT"}, "tokens": {"kind": "SUM"}}}
    fed.write_config("eu-central-1", bare)
    assert main(["reload", "--config", str(central)]) == 0
    fed.wait_for(consuming(fed, "eu-central-1"), what="eu-central-1's consumer after the reload")
    assert record(central, "tokens", "2.5") == 0
    metering = fed.status("eu-central-1")["metering"]
    assert metering["state"] == "running" and metering["detail"] == ""
    assert metering["meters"] == {"api_requests": "COUNT", "tokens": "SUM"}
    assert metering["events"]["accepted"] == 1
    assert fed.metric("eu-central-1", "meshd_service_restarts_total", service="metering-ingest") == 0

    # ...and a meter added to a running region is usable at once too.
    west_cfg = fed.read_config("eu-west-1")
    west_cfg["metering"]["meters"]["tokens"] = {"kind": "SUM"}
    fed.write_config("eu-west-1", west_cfg)
    assert main(["reload", "--config", str(west)]) == 0
    assert record(west, "tokens", "4") == 0
    capsys.readouterr()
    assert main(["usage", "--config", str(west), "--tenant", TENANT, "--period",
                 _this_month(), "--json"]) == 0
    totals = json.loads(capsys.readouterr().out)
    assert totals["complete"] and totals["meters"]["tokens"]["value"] == "6.5"

    # Alerts: log-only, with a notification that really went through the pipeline.
    for region in fed.regions:
        alerts = fed.status(region)["alerts"]
        assert alerts["log_only"] is True
        assert all(r["targets"] == [] and r["problem"] is None for r in alerts["receivers"])
    page = {"labels": {"alertname": "FirstRunCheck", "severity": "critical", "region": "us-east-1"},
            "annotations": {"summary": "a test page"}}
    assert fed.http("eu-west-1", "/v1/alerts", method="POST", body=[page], admin=True)[0] in (200, 202)
    fed.wait_for(lambda: metric_total(fed, "eu-west-1", "meshd_alerts_notifications_queued_total") >= 1,
                 what="the notification queued")
    fed.wait_for(lambda: fed.status("eu-west-1")["alerts"]["outbox"]["depth"] == 0, what="the outbox drained")
    assert "logged only" in fed.log_text("eu-west-1")
    for region in fed.regions:
        for name in ("meshd_alerts_notifications_sent_total", "meshd_alerts_notifications_failed_total",
                     "meshd_alerts_notifications_dropped_total"):
            assert metric_total(fed, region, name) == 0, (region, name)
        assert fed.status(region)["alerts"]["outbox"]["depth"] == 0
        assert fed.metric(region, "meshd_service_up", service="alerts-deadman") == 0
        status, listed = fed.http(region, "/v1/alerts")
        assert status == 200 and not [a for a in listed["alerts"]
                                      if a["labels"].get("alertname") == "NotifierBroken"]

    # The operator fills in a real receiver and reloads: delivery and the heartbeat start, no restart.
    with RecordingReceiver() as rx:
        routes_file = fed.dir / "alert_routes.yaml"
        routes = yaml.safe_load(routes_file.read_text())
        for receiver in routes["receivers"]:
            receiver["urls"] = [rx.json_url(f"/{receiver['name']}")]
        routes_file.write_text(yaml.safe_dump(routes))
        for region in fed.regions:
            assert main(["reload", "--config", str(fed.config_path(region))]) == 0
            assert fed.status(region)["alerts"]["log_only"] is False
        rx.wait_for(lambda got: [r for r in got if r.path == "/heartbeat"], what="the dead man's switch")
        page = {"labels": {**page["labels"], "alertname": "FirstRunAfterReload"},
                "annotations": {"summary": "a page after the reload"}}
        assert fed.http("eu-west-1", "/v1/alerts", method="POST", body=[page], admin=True)[0] in (200, 202)
        rx.wait_for(lambda got: [r for r in got if r.path == "/pager" and "after the reload" in r.title],
                    what="the page at the filled-in receiver")


def _this_month() -> str:
    from datetime import datetime

    return datetime.now(UTC).strftime("%Y-%m")
