"""Running the probes, settling their states, and publishing the region's verdict.

One :class:`ProbeRunner` per probe checks it on its interval under its
deadline and feeds the result through hysteresis. A state change only wakes
the :class:`HealthEngine`'s publisher task, which recomputes the verdict and
calls the hooks (``meshd_region_health_changed``, ``meshd_alert``): a slow
hook can delay a notification but never a probe, and a burst of changes is
published once.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import TaskStatus

from meshd import Alert, Daemon, HealthReport, HealthStatus, Translator

from . import health_alerts
from .exposition import HealthMetrics
from .hysteresis import Hysteresis, ProbeState
from .probes import Level, Probe, ProbeContext, ProbeResult, ProbeSettings, ProbeStuck
from .settings import SECTION, HealthConfig, ResolvedProbe, resolve_probes
from .verdict import ProbeView, VerdictRules, region_verdict

CLOSE_BUDGET = 2.0
"""Seconds a removed probe's ``close()`` may take."""


class UnavailableProbe(Probe):
    """Stands in for a probe that cannot run (its kind's plugin is gone, or it refused its settings): always critical.

    Such a probe stays visible as failing instead of silently vanishing from the region's verdict.
    """

    kind = "unavailable"
    reason = ""

    async def check(self) -> ProbeResult:
        return ProbeResult.critical(self.reason or f"probe kind {self.settings.kind!r} is not available "
                                    "(is the plugin that provides it installed and enabled?)")


class ProbeRunner:
    """One probe: its checks, its hysteresis and what it last saw."""

    def __init__(self, resolved: ResolvedProbe, context: ProbeContext, metrics: HealthMetrics,
                 log: logging.Logger):
        self.resolved = resolved
        self.settings: ProbeSettings = resolved.settings
        try:
            self.probe: Probe = resolved.cls(resolved.settings, context)
        except Exception as exc:  # the contract lets __init__ refuse settings with ValueError
            log.error("probe %s cannot be built: %s: %s", resolved.settings.name, type(exc).__name__, exc)
            self.probe = UnavailableProbe(resolved.settings, context)
            self.probe.reason = f"the probe could not be built: {type(exc).__name__}: {exc}"
        self.kind = resolved.settings.kind
        self.hysteresis = Hysteresis(self.settings.fail_after, self.settings.recover_after)
        self.metrics = metrics
        self.log = log
        self.since = time.time()
        self.last: ProbeResult | None = None
        self.last_checked: float | None = None
        self.last_duration: float | None = None
        self.checks = 0
        self.failures = 0
        metrics.probe_state(self.name, self.kind, self.state)

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def state(self) -> ProbeState:
        return self.hysteresis.state

    def view(self) -> ProbeView:
        return ProbeView(self.name, self.settings.severity, self.state)

    async def check_once(self) -> tuple[ProbeResult, float, bool]:
        """One check under the deadline: (result, seconds taken, timed out). Never raises but for cancellation."""
        began = time.perf_counter()
        result: ProbeResult | None = None
        with anyio.move_on_after(self.settings.timeout) as scope:
            try:
                result = await self.probe.check()
            except ProbeStuck as exc:
                result = ProbeResult.critical(str(exc))
            except Exception as exc:
                result = ProbeResult.critical(f"the probe raised {type(exc).__name__}: {exc}")
        duration = time.perf_counter() - began
        if scope.cancelled_caught:
            return ProbeResult.critical(f"no answer within {self.settings.timeout:g}s"), duration, True
        if not isinstance(result, ProbeResult):
            result = ProbeResult.critical(f"the probe returned {type(result).__name__}, not a ProbeResult")
        return result, duration, False

    def record(self, result: ProbeResult, duration: float, timed_out: bool) -> ProbeState | None:
        """Account for one result; the new settled state if it changed."""
        self.last, self.last_checked, self.last_duration = result, time.time(), duration
        self.checks += 1
        if result.level is not Level.OK:
            self.failures += 1
        self.metrics.checked(self.name, result, duration, timed_out)
        before = self.state
        changed = self.hysteresis.observe(result.level)
        if changed is not None:
            self.since = self.last_checked
            self.metrics.probe_state(self.name, self.kind, changed)
            if changed.failing or before.failing:
                detail = f" ({result.error})" if result.error else ""
                self.log.log(logging.WARNING if changed.failing else logging.INFO,
                             "probe %s: %s -> %s%s", self.name, before.value, changed.value, detail)
        return changed

    async def run(self, changed: Callable[[], None],
                  checked: Callable[[ProbeRunner, ProbeResult, float], None] = lambda *_: None) -> None:
        """Check forever on the probe's interval; ``checked(...)`` after every check, ``changed()`` after every state change."""
        interval = self.settings.interval
        # A little jitter so that probes configured alike do not all fire on the same tick.
        await anyio.sleep(random.uniform(0, min(0.5, interval / 4)))
        next_at = anyio.current_time()
        while True:
            result, duration, timed_out = await self.check_once()
            checked(self, result, duration)
            if self.record(result, duration, timed_out) is not None:
                changed()
            next_at += interval
            now = anyio.current_time()
            if next_at < now:
                next_at = now  # the check overran its interval: start the next one at once, skip the missed ticks
            await anyio.sleep(next_at - now)

    async def close(self) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_BUDGET):
            try:
                await self.probe.close()
            except Exception as exc:
                self.log.error("probe %s failed to close: %s: %s", self.name, type(exc).__name__, exc)

    def to_json(self) -> dict[str, Any]:
        """This probe in ``/status`` (``health.probes[]``)."""
        s, h, last = self.settings, self.hysteresis, self.last
        return {
            "name": self.name,
            "kind": self.kind,
            "unit": self.probe.unit,
            "severity": s.severity,
            "state": self.state.value,
            "since": self.since,
            "last_result": last.level.label if last else None,
            "last_value": last.value if last else None,
            "last_error": last.error if last else None,
            "last_checked": self.last_checked,
            "last_duration_s": round(self.last_duration, 6) if self.last_duration is not None else None,
            "consecutive": h.consecutive,
            "streak": h.streak,
            "streak_needed": h.needed,
            "fail_after": s.fail_after,
            "recover_after": s.recover_after,
            "interval_s": s.interval,
            "timeout_s": s.timeout,
            "checks": self.checks,
            "failures": self.failures,
            **self.probe.describe(),
        }


class HealthEngine:
    """The probes of one daemon and the verdict they add up to."""

    def __init__(self, daemon: Daemon):
        self.daemon = daemon
        self.log = daemon.log.getChild("health")
        self.metrics = HealthMetrics(daemon.metrics)
        self.t = Translator(daemon.config.daemon.lang)
        self.context = ProbeContext(region=daemon.region, state_dir=daemon.state_dir, secret=daemon.secret)
        self.runners: dict[str, ProbeRunner] = {}
        self.report = HealthReport(HealthStatus.HEALTHY, (), time.time())
        self.published: HealthReport | None = None
        self._firing: dict[str, Alert] = {}
        self._last_refresh = 0.0
        self._retired: list[ProbeRunner] = []
        self._wake = anyio.Event()
        self._reconfigure = anyio.Event()
        self.metrics.verdict(self.report.status)

    @property
    def config(self) -> HealthConfig:
        return self.daemon.plugin_config(SECTION)

    @property
    def rules(self) -> VerdictRules:
        return self.config.verdict

    # ------------------------------------------------------------ configuration

    def _build(self) -> None:
        """(Re)build the runners from the daemon's config, keeping those whose settings did not change."""
        resolved, issues = resolve_probes(self.daemon.config, self.daemon.hooks.probe_kinds(),
                                          unavailable=UnavailableProbe)
        for issue in issues:
            self.log.error("config: %s", issue)
        old, self.runners = self.runners, {}
        for r in resolved:
            previous = old.get(r.settings.name)
            if previous is not None and previous.resolved == r:
                self.runners[r.settings.name] = old.pop(r.settings.name)
            else:
                self.runners[r.settings.name] = ProbeRunner(r, self.context, self.metrics, self.log)
        self._retired = list(old.values())
        # One worker thread per probe at most: a probe stuck in the kernel holds only its own.
        self.context.limiter.total_tokens = max(1, min(32, len(self.runners)))
        self.log.info("probing %d probe(s): %s", len(self.runners), ", ".join(self.runners) or "none")

    def reconfigure(self) -> None:
        """The config was reloaded: rebuild the probes at the next opportunity."""
        self._reconfigure.set()

    async def _retire(self) -> None:
        for runner in self._retired:
            await runner.close()
            self.metrics.forget(runner.name, runner.kind)
        if self._retired:
            # A probe whose settings changed kept its name: its new runner's state series were
            # just dropped with the old ones (its counters start over, which Prometheus handles).
            for runner in self.runners.values():
                self.metrics.probe_state(runner.name, runner.kind, runner.state)
        self._retired = []

    # ------------------------------------------------------------ running

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The plugin's service: probes, and the publisher of their verdict."""
        self._build()
        await self._retire()
        async with anyio.create_task_group() as outer:
            outer.start_soon(self._publisher)
            self._changed()  # the first verdict: every probe pending, so healthy
            task_status.started()
            try:
                while True:
                    async with anyio.create_task_group() as probes:
                        for runner in self.runners.values():
                            probes.start_soon(runner.run, self._changed, self._checked, name=f"probe {runner.name}")
                        await self._reconfigure.wait()
                        self._reconfigure = anyio.Event()
                        probes.cancel_scope.cancel()
                    self._build()
                    await self._retire()
                    self._changed()
            finally:
                for runner in self.runners.values():
                    await runner.close()

    def _changed(self) -> None:
        self._wake.set()

    def _checked(self, runner: ProbeRunner, result: ProbeResult, duration: float) -> None:
        # A latency the probe measured itself (HTTP, TCP) leaves out the wait for a worker thread, which on a
        # loaded host is not the service's doing.
        measured = result.value if runner.probe.unit == "s" and result.value is not None else duration
        self.daemon.hooks.probe_result(self.daemon, runner.name, runner.kind, result.level is not Level.CRITICAL,
                                       measured * 1000.0, time.time())

    async def _publisher(self) -> None:
        while True:
            # Woken by a change, or by the refresh period to raise firing alerts again.
            with anyio.move_on_after(self.config.alert_refresh):
                await self._wake.wait()
            self._wake = anyio.Event()
            try:
                await self.publish()
            except Exception as exc:  # a bug here must not stop later verdicts
                self.log.error("publishing the health verdict failed: %s: %s", type(exc).__name__, exc,
                               exc_info=exc)

    def evaluate(self) -> HealthReport:
        """The verdict the probes add up to now (``since`` kept while the status holds)."""
        status, reasons = region_verdict((r.view() for r in self.runners.values()), self.rules)
        if status is self.report.status and reasons == self.report.reasons:
            return self.report
        since = self.report.since if status is self.report.status else time.time()
        return HealthReport(status, reasons, since)

    async def publish(self) -> None:
        """Tell the other plugins about a new verdict, and raise or resolve alerts."""
        report = self.evaluate()
        previous = self.published
        if previous is None or report != previous:
            self.report = report
            self.metrics.verdict(report.status)
            if previous is not None and report.status is not previous.status:
                self.metrics.changes.labels(report.status.value).inc()
            if previous is not None or report.status is not HealthStatus.HEALTHY:
                self.log.log(logging.INFO if report.status is HealthStatus.HEALTHY else logging.WARNING,
                             "region health: %s%s", report.status.value,
                             f" (failing: {', '.join(report.reasons)})" if report.reasons else "")
            self.published = report
            await self.daemon.hooks.region_health_changed(self.daemon, report, previous)
        if self.config.alerts:
            await self._alerts()

    def desired_alerts(self) -> dict[str, Alert]:
        alerts = []
        for runner in self.runners.values():
            if runner.state.failing:
                alerts.append(health_alerts.probe_alert(
                    self.t, self.daemon.region, name=runner.name, kind=runner.kind,
                    severity=runner.settings.severity, state=runner.state,
                    error=runner.last.error if runner.last else None, runbook_url=runner.settings.runbook_url))
        if self.report.status is not HealthStatus.HEALTHY:
            alerts.append(health_alerts.region_alert(self.t, self.daemon.region, self.report))
        return health_alerts.by_fingerprint(alerts)

    async def _alerts(self) -> None:
        desired = self.desired_alerts()
        refresh_due = anyio.current_time() - self._last_refresh >= self.config.alert_refresh
        for fingerprint, alert in list(self._firing.items()):
            if fingerprint not in desired:
                del self._firing[fingerprint]
                await self.daemon.hooks.alert(self.daemon, health_alerts.resolved(alert, self.t))
        for fingerprint, alert in desired.items():
            if fingerprint not in self._firing or refresh_due:
                self._firing[fingerprint] = alert
                await self.daemon.hooks.alert(self.daemon, alert)
        if refresh_due:
            self._last_refresh = anyio.current_time()

    # ------------------------------------------------------------ observing

    def status(self) -> dict[str, Any]:
        """The ``health`` key of ``/status``."""
        return {**self.report.to_json(), "probes": [r.to_json() for r in self.runners.values()]}
