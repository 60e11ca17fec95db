"""``alertmanager://`` receivers against real Prometheus Alertmanager processes on loopback.

Daemons on a real nats-server hand a group to two Alertmanagers (the URLs of
one cluster), then resolve it; what each Alertmanager holds is read back from
its own API (``GET /api/v2/alerts``) and counters (``/metrics``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from alerts_receiver import drained, raise_everywhere

from meshd.natsserver import free_port
from meshd.testing import until, wait_for
from meshd_plugins.alerts.alertmanager import VALID_FOR_REPEATS, postable_alerts
from meshd_plugins.alerts.targets import TargetError, parse_target
from meshd_plugins.alerts.templates import AlertView

REGIONS = ["us-east-1", "eu-west-1"]
BINARIES = ("prometheus-alertmanager", "alertmanager")  # Debian's name, upstream's name


def alertmanager_binary() -> str:
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail("no Alertmanager binary in CI: .ci/run installs Debian's prometheus-alertmanager")
    pytest.skip("no Alertmanager binary (apt-get install prometheus-alertmanager)")


class Alertmanager:
    """One Alertmanager process on a free loopback port, with its own config and storage, no clustering."""

    def __init__(self, binary: str, workdir: Path):
        self.binary, self.workdir = binary, workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "alertmanager.yml").write_text("route: {receiver: keep}\nreceivers: [{name: keep}]\n")

    @property
    def url(self) -> str:
        return f"alertmanager://127.0.0.1:{self.port}"

    def start(self) -> Alertmanager:
        log = open(self.workdir / "alertmanager.log", "ab")
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={self.workdir / 'alertmanager.yml'}",
             f"--storage.path={self.workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
             "--cluster.listen-address="],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        wait_for(self._ready, 30, f"Alertmanager on port {self.port} ready")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"Alertmanager exited with {self.proc.returncode}: "
                               f"{(self.workdir / 'alertmanager.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts it holds as active (Alertmanager lists no alert whose endsAt has passed)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v2/alerts", timeout=5) as resp:
            return json.loads(resp.read())

    def received(self, status: str) -> float:
        """alertmanager_alerts_received_total for the v2 API: alerts posted to it, by status."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        line = f'alertmanager_alerts_received_total{{status="{status}",version="v2"}} '
        return sum(float(row[len(line):]) for row in text.splitlines() if row.startswith(line))


@pytest.fixture
def alertmanagers(tmp_path: Path) -> Iterator[Callable[..., Alertmanager]]:
    """``alertmanagers(start=True)``: a new Alertmanager process; all stopped at teardown."""
    binary = alertmanager_binary()
    made: list[Alertmanager] = []

    def make(start: bool = True) -> Alertmanager:
        am = Alertmanager(binary, tmp_path / f"am{len(made)}")
        made.append(am)
        return am.start() if start else am

    yield make
    for am in made:
        am.stop()


def routes(urls: list[str]) -> dict[str, Any]:
    return {"route": {"receiver": "nowhere", "group_by": ["alertname", "region"], "group_wait": "0s",
                      "group_interval": "500ms", "repeat_interval": "1h",
                      "routes": [{"matchers": ['severity="critical"'], "receiver": "am"}]},
            "receivers": [{"name": "nowhere"}, {"name": "am", "urls": urls}]}


def metric(daemon: Any, name: str, **labels: str) -> float:
    return daemon.metrics.value(name, **labels)


async def held(am: Alertmanager) -> list[dict[str, Any]]:
    return await anyio.to_thread.run_sync(am.alerts)


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()




@pytest.mark.anyio
@pytest.mark.nats
async def test_an_alert_and_its_resolve_reach_every_alertmanager_of_the_cluster(
        alerts_federation: Any, start_daemons: Any, alertmanagers: Callable[..., Alertmanager]) -> None:
    first, second = alertmanagers(), alertmanagers()
    configs = alerts_federation(REGIONS, routes([first.url, second.url]))
    labels = {"alertname": "RegionDown", "severity": "critical", "region": "ap-southeast-1"}
    annotations = {"summary": "Region ap-southeast-1 is down", "runbook_url": "https://runbooks/region-down"}
    async with start_daemons(configs) as daemons:
        raised = time.time()
        await raise_everywhere(daemons, labels, annotations=annotations)
        for am in (first, second):
            [alert] = await until(partial(held, am), what=f"the alert in the Alertmanager on {am.port}")
            assert alert["labels"] == labels
            assert alert["annotations"] == annotations
            assert alert["status"]["state"] == "active"
            assert alert["generatorURL"] in {f"meshd://test/{r}" for r in REGIONS}
            assert raised - 5 <= epoch(alert["startsAt"]) <= time.time()
            # Valid for a few repeat intervals (1h here), not Alertmanager's 5 min resolve_timeout.
            assert epoch(alert["endsAt"]) >= raised + (VALID_FOR_REPEATS - 1) * 3600

        await raise_everywhere(daemons, labels, status="resolved")
        for am in (first, second):
            await until(lambda am=am: anyio.to_thread.run_sync(am.received, "resolved"),
                        what=f"the resolve at the Alertmanager on {am.port}")
            assert await held(am) == []
        await drained(daemons)
        # Once for the federation: one daemon posted the alert, and its resolve, to each Alertmanager.
        for am in (first, second):
            assert (am.received("firing"), am.received("resolved")) == (1, 1)
        sent = sum(metric(d, "alerts_notifications_sent_total", receiver="am") for d in daemons.values())
        assert sent == 4  # 2 notifications x 2 Alertmanagers


@pytest.mark.anyio
@pytest.mark.nats
async def test_an_alertmanager_that_was_down_gets_the_alert_from_the_outbox(
        alerts_federation: Any, start_daemons: Any, alertmanagers: Callable[..., Alertmanager]) -> None:
    am = alertmanagers(start=False)
    configs = alerts_federation(REGIONS[:1], routes([am.url]))
    labels = {"alertname": "FailoverCommitted", "severity": "critical", "region": "eu-west-1"}
    async with start_daemons(configs) as daemons:
        [daemon] = daemons.values()
        await raise_everywhere(daemons, labels)
        await until(lambda: metric(daemon, "alerts_notifications_failed_total", receiver="am",
                                   reason="connection") >= 1, what="a refused delivery")
        await anyio.to_thread.run_sync(am.start)
        [alert] = await until(partial(held, am), what="the alert once Alertmanager is up")
        assert alert["labels"] == labels
        await drained(daemons)
        assert metric(daemon, "alerts_notifications_sent_total", receiver="am") == 1


def test_alertmanager_urls() -> None:
    plain = parse_target("alertmanager://am-1.internal")
    assert (plain.kind, plain.endpoint, plain.key) == ("alertmanager", "http://am-1.internal:9093/api/v2/alerts", "")
    tls = parse_target("alertmanagers://meshd:S3cret-Passw0rd@am.example.com:8443/alertmanager")
    assert tls.endpoint == "https://am.example.com:8443/alertmanager/api/v2/alerts"
    assert tls.key == "meshd:S3cret-Passw0rd" and "S3cret-Passw0rd" in tls.secret_parts
    assert "S3cret-Passw0rd" not in tls.redacted and "meshd" not in tls.secret_parts
    for bad, why in [("alertmanager://", "needs a host"), ("alertmanager://am:web", "not a number"),
                     ("alertmanager://am?token=x", "no query parameters")]:
        with pytest.raises(TargetError, match=why):
            parse_target(bad)


def test_postable_alerts_carry_every_alert_and_end_resolved_ones() -> None:
    now = 1_800_000_000.0
    firing = [AlertView(f"f{i}", {"alertname": "ProbeFailing", "probe": f"p{i}"}, {"summary": "s"}, "firing",
                        now - 60, None) for i in range(30)]
    resolved = [AlertView("r", {"alertname": "ProbeFailing", "probe": "old"}, {}, "resolved", now - 600, now - 5)]
    body = postable_alerts(firing, resolved, {"alertname": "ProbeFailing", "region": "eu-west-1"}, now=now,
                           repeat_interval=600, generator_url="meshd://acme/eu-west-1")
    assert len(body) == 31  # no max_alerts cut: Alertmanager tracks each alert
    assert body[0]["labels"] == {"alertname": "ProbeFailing", "region": "eu-west-1", "probe": "p0"}
    assert epoch(body[0]["endsAt"]) == now + VALID_FOR_REPEATS * 600
    assert epoch(body[0]["startsAt"]) == now - 60
    assert epoch(body[-1]["endsAt"]) == now - 5 and body[-1]["generatorURL"] == "meshd://acme/eu-west-1"
