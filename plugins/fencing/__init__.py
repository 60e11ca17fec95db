"""The fencing plugin: an isolated region stops routing to itself, like Patroni without its DCS.

It learns everything through hooks: that this daemon is isolated from
``meshd_member_changed`` (membership's verdict on itself), and which
failovers are in force from ``meshd_failover_committed``. The verdict is in
:mod:`.state`; when the fence goes up or comes down the plugin

* calls ``meshd_region_fenced(daemon, fenced, reason)`` so that other
  plugins act (routing marks its answers, health reports ``fenced``, a
  command action can take a load balancer out);
* while fenced, registers :class:`LocalRegionFence`, a route filter that
  removes this region from the candidates of tenants whose residency has
  another region (it is registered only while fenced, so routing pays for
  no filter call the rest of the time);
* sets ``meshd_fenced``, fails the ``fencing`` check of ``/healthz`` and
  raises (then resolves) the ``RegionFenced`` alert.

docs/fencing.md is the operator's guide.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from typing import Any

import anyio
from anyio.abc import TaskStatus

import meshd
from meshd import hookimpl
from meshd.i18n import Translator
from meshd.members import MemberState
from meshd.service import Service

from .alerts import fence_alert
from .config import SECTION, FenceTiming, FencingConfig, resolve
from .state import Change, FenceState

FILTER_NAME = "fencing-route-filter"


class LocalRegionFence:
    """The route filter of a fenced region: other regions of the residency take its tenants."""

    def __init__(self, region: str, regions: dict[str, Any]):
        self.region = region
        by_jurisdiction: dict[str, set[str]] = {}
        for name, r in regions.items():
            by_jurisdiction.setdefault(r.jurisdiction, set()).add(name)
        # Residencies where this region has a sibling; elsewhere it keeps its tenants (and says it is fenced).
        self.shared = frozenset(j for j, names in by_jurisdiction.items() if region in names and len(names) > 1)

    @hookimpl
    def meshd_route_filter(self, request: Any, candidates: Sequence[Any]) -> Sequence[Any] | None:
        if request.residency not in self.shared:
            return None
        return [c for c in candidates if c.region != self.region]


class FencingPlugin:
    """One instance per daemon; the verdict lives in ``self.state``."""

    def __init__(self) -> None:
        self.state: FenceState | None = None
        self.timing: FenceTiming | None = None
        self.enabled = False
        self.since: float | None = None
        """Wall-clock time of the last change of the fence."""
        self._wake: anyio.Event | None = None  # made in the loop by the service; it evaluates at start anyway
        self._alert_up = False

    # ------------------------------------------------------------ state

    def _ensure(self, daemon: meshd.Daemon) -> FenceState:
        """The state, built on first use: membership and failover hooks may fire before our startup."""
        if self.state is None:
            self._configure(daemon)
            timing = self.timing or FenceTiming(math.inf, 0.0, "none")
            self.state = FenceState(daemon.region, timing.after, timing.settle)
            m = daemon.metrics
            self.m_fenced = m.gauge("fenced", "1 while this region is fenced (it routes no tenant that another "
                                    "region of its residency can take)")
            self.m_changes = m.counter("fence_changes_total", "Times the fence went up, came down or changed "
                                       "reason, by the resulting state and reason", ["fenced", "reason"])
        return self.state

    def _configure(self, daemon: meshd.Daemon) -> None:
        section: FencingConfig = daemon.plugin_config(SECTION)
        self.timing = resolve(daemon.config)
        self.enabled = section.enabled and self.timing is not None
        if self.state is not None and self.timing is not None:
            self.state.after, self.state.settle = self.timing.after, self.timing.settle

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _run(self, daemon: meshd.Daemon, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        state = self._ensure(daemon)
        task_status.started()
        while True:
            wake = self._wake = anyio.Event()  # before evaluating: an input arriving meanwhile wakes the wait
            now = time.monotonic()
            change = state.evaluate(now) if self.enabled else state.disable(now)
            if change is not None:
                await self._apply(daemon, change)
            deadline = state.next_deadline(now) if self.enabled else None
            with anyio.move_on_after(math.inf if deadline is None else max(0.0, deadline - time.monotonic())):
                await wake.wait()

    async def _apply(self, daemon: meshd.Daemon, change: Change) -> None:
        state = self._ensure(daemon)
        self.since = time.time()
        self.m_fenced.set(1 if change.fenced else 0)
        self.m_changes.labels(str(change.fenced).lower(), change.reason).inc()
        log = daemon.log.getChild("fencing")
        if change.fenced:
            log.warning("fenced (%s): routing no tenant that another region of its residency can take%s",
                        change.reason, f"; isolated: {state.isolated_why}" if state.isolated_why else "")
            if not daemon.hooks.pm.has_plugin(FILTER_NAME):  # there already when the fence only changes reason
                daemon.hooks.pm.register(LocalRegionFence(daemon.region, daemon.regions), name=FILTER_NAME)
        else:
            log.info("fence lifted (%s): routing to %s again", change.reason, daemon.region)
            if daemon.hooks.pm.has_plugin(FILTER_NAME):
                daemon.hooks.pm.unregister(name=FILTER_NAME)
        # The filter is in place before anyone hears of the fence, and gone before anyone hears it is lifted.
        await daemon.hooks.region_fenced(daemon, change.fenced, change.reason)
        section: FencingConfig = daemon.plugin_config(SECTION)
        if (change.fenced and section.alerts) or (not change.fenced and self._alert_up):
            t = Translator(daemon.config.daemon.lang)
            await daemon.hooks.alert(daemon, fence_alert(t, daemon.region, change.fenced, change.reason))
            self._alert_up = change.fenced

    # ------------------------------------------------------------ configuration and lifecycle

    @hookimpl
    def meshd_config_models(self) -> dict[str, type]:
        return {SECTION: FencingConfig}

    @hookimpl
    def meshd_startup(self, daemon: meshd.Daemon) -> None:
        self._ensure(daemon)
        log = daemon.log.getChild("fencing")
        if self.timing is None:
            log.warning("fencing is idle: the membership plugin is not loaded, so isolation cannot be seen "
                        "(set fencing.enabled: false to silence this)")
        elif self.enabled:
            log.info("fencing after %gs isolated (%s), settling %gs after a rejoin", self.timing.after,
                     "fencing.after" if self.timing.after_source == "config" else "membership failover decision time",
                     self.timing.settle)

    @hookimpl
    def meshd_services(self, daemon: meshd.Daemon) -> list[Service]:
        return [Service("fencing", functools.partial(self._run, daemon))]

    @hookimpl
    def meshd_reload(self, daemon: meshd.Daemon) -> None:
        self._ensure(daemon)
        self._configure(daemon)
        self._poke()

    # ------------------------------------------------------------ what the federation tells us

    @hookimpl
    def meshd_member_changed(self, daemon: meshd.Daemon, member: meshd.Member) -> None:
        if member.region != daemon.region:
            return
        state = self._ensure(daemon)
        if member.state == MemberState.ISOLATED:
            state.isolated(time.monotonic(), str(member.meta.get("reason", "")) if member.meta else "")
        else:
            state.rejoined(time.monotonic())
        self._poke()

    @hookimpl
    def meshd_failover_committed(self, daemon: meshd.Daemon, decision: meshd.Decision) -> None:
        if self._ensure(daemon).decision(decision.region, decision.term, decision.action, decision.target):
            self._poke()

    # ------------------------------------------------------------ observability

    @hookimpl
    def meshd_status(self, daemon: meshd.Daemon) -> dict[str, Any]:
        state = self._ensure(daemon)
        doc = {"enabled": self.enabled, **state.to_json(time.monotonic()), "since": self.since}
        if self.timing is not None:
            doc.update(self.timing.to_json())
        return {"fencing": doc}

    @hookimpl
    def meshd_health_checks(self, daemon: meshd.Daemon) -> list[meshd.HealthCheck]:
        state = self._ensure(daemon)
        if state.fenced:
            return [meshd.HealthCheck("fencing", False, f"fenced: {state.reason}",
                                      {"fenced": True, "reason": state.reason})]
        return [meshd.HealthCheck("fencing", True, "not fenced", {"fenced": False})]
