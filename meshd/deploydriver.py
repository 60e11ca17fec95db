"""The traffic-driver contract of canary rollouts (the ``meshd_deploy_driver`` hook).

A driver moves a service's traffic in one region between its stable and its
canary version, and may report what each of them served. The deploy plugin
calls it from its rollout loop on the daemon's event loop; a driver that
talks to slow things (a socket, a command) does so with ``await``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any


class DriverError(Exception):
    """The driver could not do what was asked; the message names what failed (socket, server, command)."""


@dataclass(frozen=True)
class TrafficStep:
    """One step of a rollout, as a driver receives it."""

    service: str
    region: str
    version: str
    canary_weight: int
    """Percent of requests for the canary, 0..100; the stable version gets the rest."""
    rollout_id: str = ""
    step: int = 0
    action: str = "step"
    """``step`` (move traffic), ``promote`` (the canary becomes stable) or ``rollback`` (all to stable)."""

    def as_dict(self) -> dict[str, Any]:
        return {"service": self.service, "region": self.region, "version": self.version,
                "canary_weight": self.canary_weight, "rollout_id": self.rollout_id, "step": self.step,
                "action": self.action}


@dataclass(frozen=True)
class ServerCounters:
    """Cumulative counters of one version's server, as the load balancer reports them."""

    requests: int
    errors_5xx: int
    response_ms: float | None = None
    """The load balancer's recent response time of this server (HAProxy: ``rtime``, mean of the last 1024)."""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DriverStats:
    stable: ServerCounters
    canary: ServerCounters


class TrafficDriver(abc.ABC):
    """Moves one service's traffic in one region; built by ``meshd_deploy_driver``."""

    kind: str = ""

    @abc.abstractmethod
    async def apply(self, step: TrafficStep) -> None:
        """Send ``step.canary_weight`` percent to the canary; idempotent. Raise :class:`DriverError`."""

    async def stats(self) -> DriverStats | None:
        """Cumulative per-version counters, or None when this driver cannot see traffic."""
        return None
