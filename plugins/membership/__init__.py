"""The membership plugin: SWIM with Lifeguard over NATS.

Every daemon keeps the federation's membership (alive / suspect / dead /
left for each region, ``isolated`` for itself when it lost the bus) and
tells other plugins about each transition through ``meshd_member_changed``.
The protocol engine is :class:`.swim.Swim`, assembled from :mod:`.probing`,
:mod:`.selfcheck`, :mod:`.inbound` and :mod:`.spreading`; the precedence
rules are in :mod:`.table`, Lifeguard's timeout in :mod:`.suspicion`, the
wire format in :mod:`.wire`, the timing profiles in :mod:`.settings`.
docs/membership.md is the operator's guide.
"""

from __future__ import annotations

import time
from typing import Any

import meshd
from meshd import hookimpl
from meshd.service import Service

from .settings import SECTION, MembershipConfig
from .swim import Swim


class MembershipPlugin:
    """One instance per daemon; the protocol state lives in ``self.swim``."""

    def __init__(self) -> None:
        self.swim: Swim | None = None
        self._health: str | None = None  # a verdict that came before our startup hook ran

    @hookimpl
    def meshd_config_models(self) -> dict[str, type]:
        return {SECTION: MembershipConfig}

    @hookimpl
    async def meshd_startup(self, daemon: meshd.Daemon) -> None:
        config: MembershipConfig = daemon.plugin_config(SECTION)
        self.swim = Swim(daemon, config.timing())
        self.swim.alerts_enabled = config.alerts
        self.swim.health = self._health
        await self.swim.start()

    @hookimpl
    def meshd_services(self, daemon: meshd.Daemon) -> list[Service]:
        if self.swim is None:
            return []
        return [Service(name, run) for name, run in self.swim.services()]

    @hookimpl
    async def meshd_shutdown(self, daemon: meshd.Daemon) -> None:
        if self.swim is not None:
            await self.swim.leave()

    @hookimpl
    async def meshd_bus_state(self, daemon: meshd.Daemon, connected: bool) -> None:
        if self.swim is not None:
            await self.swim.bus_state(connected)

    @hookimpl
    async def meshd_reload(self, daemon: meshd.Daemon, previous: Any) -> None:
        if self.swim is None:
            return
        config: MembershipConfig = daemon.plugin_config(SECTION)
        timing = config.timing()
        if timing != self.swim.timing:
            self.swim.timing = timing
            self.swim.awareness.maximum = timing.awareness_max
            self.swim.log.info("membership timing reloaded: %s", self.swim._timing_summary())
        self.swim.alerts_enabled = config.alerts

    @hookimpl
    async def meshd_region_health_changed(self, daemon: meshd.Daemon, report: meshd.HealthReport,
                                          previous: meshd.HealthReport | None) -> None:
        self._health = report.status.value
        if self.swim is not None:
            await self.swim.set_health(report.status.value)

    @hookimpl
    def meshd_status(self, daemon: meshd.Daemon) -> dict[str, Any]:
        swim = self.swim
        if swim is None:
            return {}
        floor, ceiling = swim.suspicion_bounds()
        return {
            "members": [m.to_json() for m in swim.members()],
            "membership": {
                "incarnation": swim.incarnation,
                "profile": daemon.plugin_config(SECTION).profile,
                "isolated": swim.isolated,
                "isolated_reason": swim.isolated_reason or None,
                "awareness": swim.awareness.score,
                "grace_s": round(max(0.0, swim.grace_until - time.monotonic()), 3),
                "suspects": sorted(swim.suspicions),
                "suspicion_timeout_s": {"min": round(floor, 3), "max": round(ceiling, 3)},
                "timing": swim.timing.to_json(),
            },
        }

    @hookimpl
    def meshd_health_checks(self, daemon: meshd.Daemon) -> list[meshd.HealthCheck]:
        swim = self.swim
        if swim is None:
            return []
        if swim.isolated:
            return [meshd.HealthCheck("membership", False, f"isolated: {swim.isolated_reason}")]
        alive = sum(1 for m in swim.table if m.state.value == "alive")
        return [meshd.HealthCheck("membership", True, f"{alive + 1} of {len(swim.regions)} regions alive")]
