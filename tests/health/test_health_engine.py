"""The health plugin inside a real daemon (in-memory bus): verdicts, hook calls, alerts, /healthz, metrics, reload.

Probes here are of the test kind ``flag`` (tests/health/probe_plugin.py),
registered through ``meshd_probe_kinds`` as a third-party plugin would, so a
test can make a probe fail, hang or raise at will.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
import yaml

from meshd import Alert, HealthReport, HealthStatus, hookimpl
from meshd.daemon import Daemon
from meshd.memtransport import MemoryNetwork
from meshd.plugins import Hooks
from meshd.testing import BUILTIN_PLUGINS, until, write_federation

from .probe_plugin import FLAGS, SCRIPTS, FlagProbePlugin

pytestmark = pytest.mark.anyio
T = TypeVar("T")
_ids = itertools.count()


class Recorder:
    """Records what the health plugin tells the rest of the daemon."""

    def __init__(self) -> None:
        self.verdicts: list[tuple[HealthReport, HealthReport | None]] = []
        self.alerts: list[Alert] = []

    @hookimpl
    def meshd_region_health_changed(self, report: HealthReport, previous: HealthReport | None) -> None:
        self.verdicts.append((report, previous))

    @hookimpl
    def meshd_alert(self, alert: Alert) -> None:
        self.alerts.append(alert)

    def firing(self) -> dict[tuple[str, ...], Alert]:
        """Alerts whose latest event is a raise, keyed by (alertname, probe or '', severity)."""
        state: dict[tuple[str, ...], Alert] = {}
        for a in self.alerts:
            key = (a.labels["alertname"], a.labels.get("probe", ""), a.labels["severity"])
            if a.status == "firing":
                state[key] = a
            else:
                state.pop(key, None)
        return state


def flag(name: str, value: str) -> None:
    FLAGS[name] = value


def probe(name: str, flag_key: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "flag", "flag": flag_key, "interval": "50ms", "timeout": "500ms",
            "fail_after": 2, "recover_after": 2, **extra}


def write_health(path: Path, health: dict[str, Any], **top: Any) -> None:
    data = yaml.safe_load(path.read_text())
    data["health"] = health
    data.update(top)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture
def keys() -> Callable[[str], str]:
    """Unique flag names per test, so flags never leak between tests."""
    n = next(_ids)
    return lambda name: f"t{n}-{name}"


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_federation(tmp_path, ["eu-west-1", "us-east-1"], "nats://127.0.0.1:1")["eu-west-1"]


@pytest.fixture
async def start(config_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """``await start(health)``: a daemon with the health plugin, the flag kind and a Recorder."""
    async with anyio.create_task_group() as tg:
        daemons: list[Daemon] = []

        async def go(health: dict[str, Any], **top: Any) -> tuple[Daemon, Recorder]:
            write_health(config_path, health, **top)
            recorder = Recorder()
            blocked = [p for p in BUILTIN_PLUGINS if p != "health"]
            hooks = Hooks.load(blocked=blocked, extra=[("flagprobe", FlagProbePlugin()), ("recorder", recorder)])
            daemon = Daemon(hooks.load_config(config_path), hooks,
                            transport=MemoryNetwork().transport("eu-west-1"))
            await tg.start(daemon.run)
            daemons.append(daemon)
            return daemon, recorder

        yield go
        for d in daemons:
            d.stop()


def health_of(daemon: Daemon) -> dict[str, Any]:
    return daemon.hooks.pm.get_plugin("health").engine.status()


def healthz(daemon: Daemon) -> tuple[int, dict[str, Any]]:
    response = daemon._healthz(None)  # type: ignore[arg-type]
    return response.status, json.loads(response.body)


async def test_a_failing_probe_degrades_the_region_then_it_recovers(start: Callable[..., Any],
                                                                    keys: Callable[[str], str]) -> None:
    k = keys("api")
    flag(k, "ok")
    daemon, rec = await start({"probes": [probe("api", k)]})
    first, previous = await until(lambda: rec.verdicts and rec.verdicts[0], what="the first verdict")
    assert previous is None and first.status is HealthStatus.HEALTHY and first.reasons == ()

    flag(k, "critical")
    await until(lambda: health_of(daemon)["status"] == "degraded", what="degraded")
    doc = health_of(daemon)
    assert doc["reasons"] == ["api"]
    [p] = doc["probes"]
    assert p["state"] == "critical" and p["last_error"] == "flag says critical" and p["consecutive"] >= 2
    report, previous = rec.verdicts[-1]
    assert report.status is HealthStatus.DEGRADED and report.reasons == ("api",) and previous == first
    code, body = healthz(daemon)
    assert code == 200  # degraded is reported but stays up
    check = next(c for c in body["checks"] if c["name"] == "health")
    assert check["ok"] and check["status"] == "degraded" and check["reasons"] == ["api"]

    firing = await until(lambda: len(rec.firing()) == 2 and rec.firing(), what="two alerts")
    pf = firing[("ProbeFailing", "api", "warning")]
    assert pf.labels == {"alertname": "ProbeFailing", "severity": "warning", "region": "eu-west-1",
                         "probe": "api", "kind": "flag"}
    assert pf.annotations["summary"] == "Health probe api is failing in eu-west-1"
    assert "flag says critical" in pf.annotations["description"]
    rd = firing[("RegionHealthDegraded", "", "warning")]
    assert rd.labels["region"] == "eu-west-1" and "api" in rd.annotations["description"]

    flag(k, "ok")
    await until(lambda: health_of(daemon)["status"] == "healthy", what="healthy again")
    assert rec.verdicts[-1][0].status is HealthStatus.HEALTHY
    assert rec.verdicts[-1][1] is not None and rec.verdicts[-1][1].status is HealthStatus.DEGRADED
    await until(lambda: not rec.firing(), what="alerts resolved")
    resolved = [a for a in rec.alerts if a.status == "resolved"]
    assert {a.labels["alertname"] for a in resolved} == {"ProbeFailing", "RegionHealthDegraded"}
    assert all(a.annotations["summary"].startswith("Resolved: ") for a in resolved)
    assert daemon.metrics.value("health_status", status="healthy") == 1
    assert daemon.metrics.value("health_status_changes_total", status="degraded") == 1


async def test_a_critical_probe_takes_the_region_down_and_fails_healthz(start: Callable[..., Any],
                                                                         keys: Callable[[str], str]) -> None:
    db, web = keys("db"), keys("web")
    flag(db, "ok")
    flag(web, "ok")
    daemon, rec = await start({"probes": [probe("db", db, severity="critical"), probe("web", web)]})
    await until(lambda: all(p["state"] == "ok" for p in health_of(daemon)["probes"]), what="probes ok")

    flag(db, "warning")  # a critical probe at warning level: degraded, and the alert only warns
    await until(lambda: health_of(daemon)["status"] == "degraded", what="degraded")
    await until(lambda: ("ProbeFailing", "db", "warning") in rec.firing(), what="warning alert")

    flag(db, "critical")
    flag(web, "critical")
    await until(lambda: health_of(daemon)["status"] == "down" and len(health_of(daemon)["reasons"]) == 2, what="down")
    assert health_of(daemon)["reasons"] == ["db", "web"]  # the probe that takes it down first
    code, body = healthz(daemon)
    assert code == 503 and body["ok"] is False
    firing = await until(lambda: ("RegionHealthDegraded", "", "critical") in rec.firing() and rec.firing(),
                         what="critical region alert")
    # A change of severity is a new alert: the warning ones were resolved, the critical ones raised.
    assert ("ProbeFailing", "db", "critical") in firing and ("ProbeFailing", "db", "warning") not in firing
    assert ("RegionHealthDegraded", "", "warning") not in firing
    assert ("ProbeFailing", "web", "warning") in firing  # a warning-severity probe never pages
    assert daemon.state == "ready"


async def test_one_bad_result_is_not_an_incident(start: Callable[..., Any], keys: Callable[[str], str]) -> None:
    k = keys("blip")
    # Scripted results, one per check: never three failures in a row, so never failing.
    script = ["ok", "critical", "ok", "critical", "critical", "ok", "warning", "critical", "ok"]
    SCRIPTS[k] = list(script)
    daemon, rec = await start({"probes": [probe("blip", k, fail_after=3, interval="20ms")]})
    await until(lambda: health_of(daemon)["probes"][0]["checks"] >= len(script) + 3, what="the script played")
    doc = health_of(daemon)
    assert doc["probes"][0]["failures"] == 5
    assert doc["status"] == "healthy" and doc["probes"][0]["state"] == "ok"
    assert [r.status for r, _ in rec.verdicts] == [HealthStatus.HEALTHY]
    assert rec.alerts == []


@pytest.mark.parametrize("mode", ["raise", "hang", "garbage"])
async def test_a_misbehaving_probe_fails_but_the_daemon_carries_on(start: Callable[..., Any],
                                                                    keys: Callable[[str], str], mode: str) -> None:
    k = keys(mode)
    flag(k, mode)
    daemon, _ = await start({"probes": [probe("bad", k, timeout="100ms", fail_after=1)]})
    await until(lambda: health_of(daemon)["probes"][0]["state"] == "critical", what="critical")
    error = health_of(daemon)["probes"][0]["last_error"]
    expected = {"raise": "the probe raised RuntimeError: the flag probe broke",
                "hang": "no answer within 0.1s", "garbage": "the probe returned str, not a ProbeResult"}[mode]
    assert error == expected
    # The verdict is published after the probe's state changes, not in the same step.
    await until(lambda: health_of(daemon)["status"] == "degraded", what="the degraded verdict")
    assert daemon.state == "ready" and (await daemon.status())["health"]["status"] == "degraded"
    flag(k, "ok")
    await until(lambda: health_of(daemon)["status"] == "healthy", what="recovered")


async def test_metrics_are_exported(start: Callable[..., Any], keys: Callable[[str], str]) -> None:
    k = keys("m")
    flag(k, "warning")
    daemon, _ = await start({"probes": [probe("m", k, fail_after=1)]})
    await until(lambda: health_of(daemon)["probes"][0]["state"] == "warning", what="warning")
    # The verdict (and its gauge) is published by the engine's publisher after the probe settles.
    await until(lambda: health_of(daemon)["status"] == "degraded", what="degraded verdict published")
    text = daemon.metrics.render().decode()
    assert 'meshd_health_probe_state{kind="flag",probe="m",state="warning"} 1.0' in text
    assert 'meshd_health_probe_state{kind="flag",probe="m",state="ok"} 0.0' in text
    assert 'meshd_health_status{status="degraded"} 1.0' in text
    assert 'meshd_health_probe_duration_seconds_bucket{le="0.005",probe="m"}' in text
    assert daemon.metrics.value("health_probe_failures_total", probe="m", level="warning") >= 1
    assert daemon.metrics.value("health_probe_value", probe="m") == 1.0


async def test_alert_text_follows_the_region_language(start: Callable[..., Any], keys: Callable[[str], str]) -> None:
    k = keys("fr")
    flag(k, "critical")
    _, rec = await start({"probes": [probe("api", k, fail_after=1)]}, lang="fr")
    alert = (await until(lambda: rec.firing().get(("ProbeFailing", "api", "warning")), what="alert"))
    assert alert.annotations["summary"] == "La sonde de santé api échoue dans eu-west-1"
    assert "critique" in alert.annotations["description"]


async def test_no_alerts_when_disabled(start: Callable[..., Any], keys: Callable[[str], str]) -> None:
    k = keys("quiet")
    flag(k, "critical")
    daemon, rec = await start({"probes": [probe("q", k, fail_after=1)], "alerts": False})
    await until(lambda: health_of(daemon)["status"] == "degraded", what="degraded")
    assert rec.alerts == []


async def test_reload_adds_keeps_and_removes_probes(start: Callable[..., Any], keys: Callable[[str], str],
                                                    config_path: Path) -> None:
    keep, gone, new = keys("keep"), keys("gone"), keys("new")
    flag(keep, "ok")
    flag(gone, "critical")
    flag(new, "ok")
    daemon, rec = await start({"probes": [probe("keep", keep), probe("gone", gone, fail_after=1),
                                          probe("mod", keep)]})
    engine = daemon.hooks.pm.get_plugin("health").engine
    await until(lambda: health_of(daemon)["reasons"] == ["gone"], what="gone failing")
    kept_runner, gone_probe = engine.runners["keep"], engine.runners["gone"].probe
    await until(lambda: ("ProbeFailing", "gone", "warning") in rec.firing(), what="alert for gone")

    mod_runner = engine.runners["mod"]
    write_health(config_path, {"probes": [probe("keep", keep), probe("new", new), probe("mod", keep, interval="70ms")]})
    assert await daemon.reload()
    await until(lambda: [p["name"] for p in health_of(daemon)["probes"]] == ["keep", "new", "mod"], what="new probe set")
    assert engine.runners["keep"] is kept_runner  # unchanged settings: state and counters kept
    assert engine.runners["mod"] is not mod_runner and engine.runners["mod"].settings.interval == 0.07
    await until(lambda: health_of(daemon)["probes"][2]["state"] == "ok", what="changed probe ok again")
    assert daemon.metrics.value("health_probe_state", probe="mod", kind="flag", state="ok") == 1
    await until(lambda: health_of(daemon)["status"] == "healthy", what="healthy without the removed probe")
    await until(lambda: ("ProbeFailing", "gone", "warning") not in rec.firing(), what="its alert resolved")
    assert gone_probe.closed
    assert 'probe="gone"' not in daemon.metrics.render().decode()


async def test_an_unavailable_kind_is_a_visible_failure(start: Callable[..., Any],
                                                        keys: Callable[[str], str]) -> None:
    # The config was valid when loaded (the flag plugin was there); then the plugin went away,
    # as when `plugins: {disabled: [...]}` names it: the probe fails visibly instead of vanishing.
    k = keys("x")
    flag(k, "ok")
    daemon, _ = await start({"probes": [probe("x", k, fail_after=1)]})
    await until(lambda: health_of(daemon)["probes"][0]["state"] == "ok", what="ok")
    daemon.hooks.disable(["flagprobe"])
    daemon.hooks.pm.get_plugin("health").engine.reconfigure()
    await until(lambda: health_of(daemon)["probes"][0]["state"] == "critical", what="unavailable probe failing")
    assert "probe kind 'flag' is not available" in health_of(daemon)["probes"][0]["last_error"]
    assert health_of(daemon)["reasons"] == ["x"]


async def test_a_probe_that_refuses_its_settings_fails_visibly(start: Callable[..., Any]) -> None:
    daemon, _ = await start({"probes": [probe("picky", "refuse-me", fail_after=1)]})
    await until(lambda: health_of(daemon)["probes"][0]["state"] == "critical", what="critical")
    assert health_of(daemon)["probes"][0]["last_error"] == (
        "the probe could not be built: ValueError: flags named refuse* cannot be probed")
    assert daemon.state == "ready"
