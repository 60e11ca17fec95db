"""The region's verdict on itself, from its probes' settled states.

Each failing probe pushes the region to a status given by the verdict rules
(config ``health.verdict``), looked up by the probe's ``severity`` and its
settled state::

                          probe state: warning   critical
    severity: critical                 degraded  down
    severity: warning                  degraded  degraded

The region takes the worst status any probe pushes it to; the reasons are
the probes that push it away from healthy, the worst first, then by name.
``pending`` and ``ok`` probes push nothing; rules may map a case to
``healthy`` to make a probe informational only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import meshd
from meshd import HealthStatus

from .hysteresis import ProbeState

StatusName = Literal["healthy", "degraded", "down"]

_RANK = {HealthStatus.HEALTHY: 0, HealthStatus.DEGRADED: 1, HealthStatus.DOWN: 2}


class ImpactRules(meshd.StrictModel):
    """Region status caused by one probe of a given severity, by the probe's state."""

    warning: StatusName = "degraded"
    critical: StatusName = "degraded"


class VerdictRules(meshd.StrictModel):
    """``health.verdict``: how failing probes map to degraded or down."""

    critical_probes: ImpactRules = ImpactRules(warning="degraded", critical="down")
    """Probes with ``severity: critical``."""
    warning_probes: ImpactRules = ImpactRules(warning="degraded", critical="degraded")
    """Probes with ``severity: warning`` (the default severity)."""

    def impact(self, severity: str, state: ProbeState) -> HealthStatus:
        """The status one probe pushes the region to."""
        if not state.failing:
            return HealthStatus.HEALTHY
        rules = self.critical_probes if severity == "critical" else self.warning_probes
        return HealthStatus(rules.critical if state is ProbeState.CRITICAL else rules.warning)


@dataclass(frozen=True)
class ProbeView:
    """What the verdict needs of one probe."""

    name: str
    severity: str
    state: ProbeState


def region_verdict(probes: Iterable[ProbeView], rules: VerdictRules) -> tuple[HealthStatus, tuple[str, ...]]:
    """The region's status and its reasons (probe names, worst first)."""
    impacts = [(rules.impact(p.severity, p.state), p.name) for p in probes]
    failing = sorted(((s, n) for s, n in impacts if s is not HealthStatus.HEALTHY),
                     key=lambda item: (-_RANK[item[0]], item[1]))
    if not failing:
        return HealthStatus.HEALTHY, ()
    return failing[0][0], tuple(name for _, name in failing)


def worse(a: HealthStatus, b: HealthStatus) -> bool:
    """Is ``a`` worse than ``b``?"""
    return _RANK[a] > _RANK[b]
