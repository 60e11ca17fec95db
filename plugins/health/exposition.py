"""The health plugin's Prometheus metrics (all in the daemon's own registry)."""

from __future__ import annotations

from meshd import HealthStatus, Metrics

from .hysteresis import ProbeState
from .probes import Level, ProbeResult

DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class HealthMetrics:
    """``meshd_health_*``: the verdict, each probe's state, check latency and failures."""

    def __init__(self, metrics: Metrics):
        self.status = metrics.gauge("health_status", "1 for the region's current health verdict", ["status"])
        self.state = metrics.gauge("health_probe_state", "1 for each probe's current settled state",
                                   ["probe", "kind", "state"])
        self.duration = metrics.histogram("health_probe_duration_seconds",
                                          "How long each probe check took (timeouts included)", ["probe"],
                                          buckets=DURATION_BUCKETS)
        self.value = metrics.gauge("health_probe_value",
                                   "The last value a probe measured (latency s, percent, exit code...)", ["probe"])
        self.checks = metrics.counter("health_probe_checks_total", "Probe checks run", ["probe"])
        self.failures = metrics.counter("health_probe_failures_total",
                                        "Probe checks whose result was not ok, by level", ["probe", "level"])
        self.timeouts = metrics.counter("health_probe_timeouts_total",
                                        "Probe checks cancelled at their timeout", ["probe"])
        self.changes = metrics.counter("health_status_changes_total", "Changes of the region's health verdict",
                                       ["status"])

    def verdict(self, status: HealthStatus) -> None:
        for s in HealthStatus:
            self.status.labels(s.value).set(1 if s is status else 0)

    def probe_state(self, probe: str, kind: str, state: ProbeState) -> None:
        for s in ProbeState:
            self.state.labels(probe, kind, s.value).set(1 if s is state else 0)

    def checked(self, probe: str, result: ProbeResult, duration: float, timed_out: bool) -> None:
        self.checks.labels(probe).inc()
        self.duration.labels(probe).observe(duration)
        if result.value is not None:
            self.value.labels(probe).set(result.value)
        if result.level is not Level.OK:
            self.failures.labels(probe, result.level.label).inc()
        if timed_out:
            self.timeouts.labels(probe).inc()

    def forget(self, probe: str, kind: str) -> None:
        """Drop a removed probe's series, so a reload leaves no stale samples behind."""
        for s in ProbeState:
            _remove(self.state, probe, kind, s.value)
        for metric in (self.duration, self.value, self.checks, self.timeouts):
            _remove(metric, probe)
        for level in (Level.WARNING, Level.CRITICAL):
            _remove(self.failures, probe, level.label)


def _remove(metric: object, *labels: str) -> None:
    try:
        metric.remove(*labels)  # type: ignore[attr-defined]
    except KeyError:
        pass  # that series was never set
