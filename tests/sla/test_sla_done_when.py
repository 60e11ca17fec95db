"""The done-when test: real daemons, a real HTTP probe, a loopback service that fails then slows down on a schedule.

The schedule counts requests (60 failures, then 40 answers 100 ms late), not
seconds; the service logs when each answer was given, which is the truth
the daemons' figures are compared with. Samples are 200 ms and the burn
windows scaled by 0.002 (the 1 h / 5 m page becomes 7.2 s / 0.6 s) so the
whole story takes seconds.
"""

from __future__ import annotations

import json
import math
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshd.cli import main
from meshd.testing import LocalFederation
from meshd_plugins.sla import PRECISION
from meshd_plugins.sla.burn import BurnRule, rules_for_period
from meshd_plugins.sla.slo import DEFAULT_WINDOWS

from .webservice import ScheduledServer, scheduled_server

REGIONS = ["eu-west-1", "us-east-1"]
PROBED = "eu-west-1"
INTERVAL_S = 0.2
PROBE_INTERVAL_S = 0.05
SCALE = 0.002
OBJECTIVE = 99.0
SLO = """\
plans:
  starter:
    objectives: {availability: 99.0, latency_p95_ms: 1000}
"""
FAILURES, SLOW, SLOW_DELAY_S = 60, 40, 0.1
OVERHEAD_FACTOR = 4
OVERHEAD_FLOOR_MS = 5
"""A measured overhead of 1 ms (one histogram bucket) still leaves the slow answers a few ms of scheduling."""


@pytest.fixture
def web() -> Iterator[ScheduledServer]:
    with scheduled_server() as server:
        yield server


def detection_s(rule: BurnRule, history_s: float) -> float:
    """Seconds of total outage after ``history_s`` healthy seconds until ``rule`` fires (its windows scaled)."""
    threshold = rule.factor * (1 - OBJECTIVE / 100)
    long_s, short_s = rule.long_ms / 1000 * SCALE, rule.short_ms / 1000 * SCALE

    def share(x: float, window: float) -> float:
        return min(x, window) / min(window, history_s + x)

    x = 0.0
    while x < 60 and not (share(x, long_s) >= threshold and share(x, short_s) >= threshold):
        x += 0.001
    return x


def get(fed: LocalFederation, region: str, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{fed.http_ports[region]}{path}", timeout=30) as r:
        return json.loads(r.read())


def status(fed: LocalFederation) -> dict[str, Any]:
    return (fed.status(PROBED) or {}).get("sla", {})


def test_achieved_availability_p95_and_the_incident_match_the_schedule(tmp_path: Path, web: ScheduledServer,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    config = {"sla": {"sample_interval": f"{int(INTERVAL_S * 1000)}ms", "burn_window_scale": SCALE,
                      "incident_recovery": "1s", "probes": ["web"]}}
    probe = {"health": {"probes": [{"name": "web", "kind": "http", "url": web.url,
                                    "interval": f"{int(PROBE_INTERVAL_S * 1000)}ms", "timeout": "2s"}]}}
    fed = LocalFederation(tmp_path / "fed", regions=REGIONS, config=config, per_region={PROBED: probe})
    for region in REGIONS:
        (fed.config_path(region).parent / "slo.yaml").write_text(SLO)
    with fed:
        # Healthy long enough to fill the 7.2 s window of the fast page.
        fed.wait_for(lambda: status(fed).get("rows_written", 0) >= 40, timeout=60, what="a healthy history")
        history_s = status(fed)["rows_written"] * INTERVAL_S
        # Every answer so far had no delay: their p95 is what probing itself adds (loopback, scheduling) in
        # this run, under this run's load.
        overhead_ms = get(fed, PROBED, "/v1/sla?period=10m")["regions"][PROBED]["p95_ms"]
        web.schedule((FAILURES, 500, 0.0), (SLOW, 200, SLOW_DELAY_S))
        fed.wait_for(lambda: web.pending() == 0, timeout=60, what="the schedule played")
        fed.wait_for(lambda: [i for i in status(fed).get("incidents", []) if i["resolved_ms"]], timeout=60,
                     what="the incident resolved")
        # The pages resolve once the burn stops (the tickets' 14 s and 43 s windows take longer: not waited for).
        fed.wait_for(lambda: not {"page_fast", "page_slow"} & set(status(fed)["burn"]["starter"]["firing"]),
                     timeout=60, what="the pages resolved")
        # Asked of the other region: the figures cross the bus.
        doc = get(fed, "us-east-1", "/v1/sla?period=10m")
        log = list(web.log)
        took = list(web.took)
        log_text = fed.log_text(PROBED)
        # The same through the command line, then with eu-west-1 gone: it is named, not given a better number.
        asker = str(fed.config_path("us-east-1"))
        capsys.readouterr()
        assert main(["--lang", "en", "sla", "--config", asker, "--period", "10m", "--plan", "starter"]) == 0
        table = capsys.readouterr().out
        assert main(["--lang", "fr", "sla", "report", "--config", asker, "--period", "10m"]) == 0
        report = capsys.readouterr().out
        assert main(["--lang", "en", "sla", "report", "--config", asker, "--period", "10m", "--format", "pdf"]) == 2
        assert "not written to a terminal" in capsys.readouterr().err
        fed.kill(PROBED)
        assert main(["--lang", "en", "sla", "--config", asker, "--period", "10m", "--json"]) == 1
        gone = capsys.readouterr()
        assert main(["--lang", "en", "sla", "--config", asker, "--period", "2026-13"]) == 2
        bad_period = capsys.readouterr().err

    assert doc["complete"] and doc["missing"] == {}
    eu = doc["regions"][PROBED]
    covered_s = eu["covered_ms"] / 1000

    failed = [t for t, code, _ in log if code == 500]
    fail_start = failed[0]
    recovered = next(t for t, code, _ in log if code == 200 and t > failed[-1])
    outage_s = recovered - fail_start
    # Availability: the outage's share of the covered time, to one sample (the edges are partial samples).
    expected = 1 - outage_s / covered_s
    assert abs(eu["availability"] - expected) <= INTERVAL_S / covered_s, (eu["availability"], expected)

    # p95 over the answered checks of the period, from the service's own log (nearest rank).
    since = doc["since_ms"] / 1000
    delays = sorted(d for t, code, d in log if code == 200 and t >= since)
    want_ms = delays[math.ceil(0.95 * len(delays)) - 1] * 1000
    assert want_ms == SLOW_DELAY_S * 1000  # the schedule makes the slow answers more than 5 % of them
    # The probe's latency is what the service took (the scheduled delay, plus oversleeping under load: measured
    # by the service for each answer) plus what probing adds, measured above on the zero-delay answers of the
    # same run. The p95 lands among the slow answers, so it is within the slow answers' own times widened by
    # the overhead: four times its p95, since at load average 15 one run's p95 was 62 ms over the delay with
    # an overhead p95 of 22 ms (a load spike mid-run); the histogram adds its 2.2 % on each side.
    slow_took_ms = sorted(d * 1000 for _, code, d in took if code == 200 and d >= SLOW_DELAY_S)
    assert overhead_ms is not None and len(slow_took_ms) >= SLOW - 1  # the last may still be on its way out
    lower = min(want_ms, slow_took_ms[0]) * (1 - PRECISION)
    upper = (slow_took_ms[-1] + OVERHEAD_FACTOR * overhead_ms) * (1 + PRECISION) + OVERHEAD_FLOOR_MS
    assert lower <= eu["p95_ms"] <= upper, (eu["p95_ms"], overhead_ms, slow_took_ms)

    [incident] = eu["incidents"]
    # Opened at the first failing sample: the one the first failure fell in.
    assert abs(incident["opened_ms"] / 1000 - fail_start) <= INTERVAL_S
    # Detected when the first rule's windows both burnt at its factor: with the fast page's 7.2 s window full
    # that is 14.4 x 1 % x 7.2 s = 1.037 s of outage; the longer windows, not full yet, may fire first.
    # The SLO file lists no windows: the default ones, the first (28 days) setting the factors.
    expected_ttd = min(detection_s(rule, history_s) for rule in rules_for_period(DEFAULT_WINDOWS[0].length_ms))
    # The rule fires at the end of the sample in which the outage reached that length: compared as instants, since
    # the reported TTD also counts from the start of the opening sample, up to one sample before the first failure.
    detected_s = incident["detected_ms"] / 1000
    assert -PROBE_INTERVAL_S <= detected_s - (fail_start + expected_ttd) <= INTERVAL_S + PROBE_INTERVAL_S, incident
    assert abs(incident["ttd_ms"] / 1000 - expected_ttd) <= 2 * INTERVAL_S + PROBE_INTERVAL_S, incident
    assert abs(incident["ttr_ms"] / 1000 - outage_s) <= INTERVAL_S + PROBE_INTERVAL_S, (incident, outage_s)
    assert "page_fast" in incident["rules"]
    assert eu["mttd_s"] == incident["ttd_ms"] / 1000 and eu["mttr_s"] == incident["ttr_ms"] / 1000
    # Raised through the alerts hook and resolved.
    assert "SLO availability burn page_fast for plan starter: firing" in log_text
    assert "SLO availability burn page_fast for plan starter: resolved" in log_text
    judged = doc["plans"]["starter"]["regions"][PROBED]
    assert judged["availability_met"] is (eu["availability"] * 100 >= OBJECTIVE)
    assert judged["latency_met"] is True
    # us-east-1 has no "web" probe (its host probes are not SLIs here): whatever figure it has comes from its
    # peers (seen dead, or failed over, on a loaded host), never from a measurement of its own that claims 100 %.
    us = doc["regions"]["us-east-1"]
    assert us["checks"] == 0
    assert us["covered_ms"] == us["down_seen_by_peers_ms"] + us["served_by_target_ms"]

    assert "SLA over 10m" in table
    line = next(ln for ln in table.splitlines() if ln.startswith(PROBED))
    # Asked a little later than the JSON: more good time, the same outage, still under the objective ("!").
    assert re.search(r"99\.0 % / 1000 ms\s+\d+\.\d{3} % !", line), line
    after = json.loads(gone.out)
    assert after["regions"][PROBED] == {"answered": False, "reason": after["missing"][PROBED]}
    assert "availability" not in after["regions"][PROBED]
    assert f"no answer from {PROBED}" in gone.err
    assert "month 13 is not 01 to 12" in bad_period
    assert report.startswith("# Rapport SLA pour 10m") and f"| {PROBED} | starter | 99.0 % / 1000 ms |" in report
