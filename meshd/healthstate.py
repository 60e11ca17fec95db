"""A region's own health, and the checks behind ``/healthz``."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class HealthStatus(str, Enum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    DOWN = "down"


@dataclass(frozen=True)
class HealthReport:
    """The region's verdict on itself, with the failing probes as reasons."""

    status: HealthStatus
    reasons: tuple[str, ...] = ()
    since: float | None = None

    def to_json(self) -> dict[str, object]:
        return {"status": self.status.value, "reasons": list(self.reasons), "since": self.since}


@dataclass(frozen=True)
class HealthCheck:
    """One line of ``/healthz``: the endpoint answers 200 only when every check is ok."""

    name: str
    ok: bool
    detail: str = ""
    data: dict[str, object] = field(default_factory=dict)
