"""From stored samples to one region's window figures (the federation merge is in :mod:`.summary`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .latency import Histogram
from .store import Sample


@dataclass(frozen=True)
class WindowSLI:
    """A region's figures over a window: availability in [0, 1] and p95 latency in ms, with what they rest on."""

    availability: float | None
    p95_ms: float | None
    covered_ms: int
    samples: int
    checks: int

    def to_json(self) -> dict[str, object]:
        return {"availability": self.availability, "p95_ms": self.p95_ms, "covered_ms": self.covered_ms,
                "samples": self.samples, "checks": self.checks}


def window_sli(samples: Iterable[Sample], since_ms: int | None = None, until_ms: int | None = None,
               quantile: float = 0.95) -> WindowSLI:
    """Availability (time-weighted over the covered time) and the latency quantile of the samples in the window."""
    span = 0
    up = 0.0
    checks = 0
    n = 0
    hist = Histogram()
    for s in samples:
        if (since_ms is not None and s.t_ms < since_ms) or (until_ms is not None and s.t_ms >= until_ms):
            continue
        span += s.span_ms
        up += s.up_ms
        checks += s.checks
        n += 1
        if s.hist:
            hist.add_encoded(s.hist)
    return WindowSLI(up / span if span else None, hist.quantile(quantile), span, n, checks)
