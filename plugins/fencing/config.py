"""The ``fencing:`` config section, and the defaults it derives from the membership timing.

Left unset, ``after`` is the membership profile's failover decision time:
the suspicion timeout floor, ``suspicion_mult x max(1, log10 N) x
probe_interval`` for N configured regions. That is how long the rest of
the federation needs, from the probe that finds this region unreachable
(the same moment this daemon's own probe round finds itself cut off), to
declare it dead when every peer confirms; the failover vote only starts
then. Fencing at that moment means the region has stopped routing to
itself before any failover of it can be committed.

``settle`` (default: the profile's ``rejoin_grace``) keeps the fence for a
while after the region rejoins, long enough to hear of a failover the
others committed while it was cut off, so that it does not unfence and
fence again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field

import meshd
from meshd.config import LoadedConfig

SECTION = "fencing"
MEMBERSHIP = "membership"


class FencingConfig(meshd.StrictModel):
    """``fencing:`` in a region's config."""

    enabled: bool = True
    after: meshd.Duration | None = Field(default=None, gt=0)
    """Isolated this long, the region fences itself; default: the membership failover decision time."""
    settle: meshd.Duration | None = Field(default=None, ge=0)
    """After rejoining, keep the fence this long before lifting it; default: membership's rejoin_grace."""
    alerts: bool = True
    """Raise RegionFenced while fenced."""


@dataclass(frozen=True)
class FenceTiming:
    """``after`` and ``settle`` resolved to seconds, and where each came from."""

    after: float
    settle: float
    after_source: str
    """``config`` or ``membership``."""

    def to_json(self) -> dict[str, Any]:
        return {"after_s": self.after, "settle_s": self.settle, "after_source": self.after_source}


def membership_timing(config: LoadedConfig) -> Any | None:
    """The resolved membership timing, or None when the membership plugin is not loaded.

    Read from the membership section's own ``timing()``, so that fencing
    follows whatever profile and overrides the operator chose there.
    """
    section = config.plugin_sections.get(MEMBERSHIP)
    timing = getattr(section, "timing", None)
    return timing() if callable(timing) else None


def resolve(config: LoadedConfig) -> FenceTiming | None:
    """The fence timing of ``config``; None when ``after`` is unset and there is no membership timing."""
    section: FencingConfig = config.plugin(SECTION)
    timing = membership_timing(config)
    if section.after is not None:
        after, source = section.after, "config"
    elif timing is not None:
        floor, _ = timing.suspicion_bounds(len(config.region_map.regions))
        after, source = floor, "membership"
    else:
        return None
    settle = section.settle if section.settle is not None else (timing.rejoin_grace if timing else 0.0)
    return FenceTiming(after, settle, source)
