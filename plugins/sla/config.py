"""The ``sla:`` section of a region's daemon config."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from meshd.config import RelPath, StrictModel
from meshd.durations import Duration

SECTION = "sla"


class PrometheusSource(StrictModel):
    """Prometheus as the SLI source (instant queries); see promsource.py."""

    url: str
    availability_query: str = Field(min_length=1)
    latency_query: str | None = None
    timeout: Annotated[Duration, Field(gt=0.0, le=30.0)] = 2.0


class SlaConfig(StrictModel):
    """How often SLIs are sampled, which probes count, where the history lives, and the objectives file."""

    sample_interval: Annotated[Duration, Field(gt=0.0, le=3600.0)] = 10.0
    """One history row per region per interval (10 s: 259,200 rows a month before downsampling)."""
    probes: list[str] = []
    """Names of the health probes whose results are the SLIs; empty: every http and tcp probe of the region."""
    history: RelPath | None = None
    """The SQLite history; default ``<state_dir>/sla/history.sqlite``."""
    full_resolution: Annotated[Duration, Field(gt=0.0)] = 35 * 86400.0
    """Rows older than this are folded into 5-minute rows."""
    retention: Annotated[Duration, Field(gt=0.0)] = 400 * 86400.0
    """Rows older than this are deleted (400 days: a year of monthly reports and their comparisons)."""
    burn_window_scale: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    """Multiplies every burn-rate window (1 h, 5 m...): below 1 only to rehearse alerts in a test federation."""
    incident_recovery: Annotated[Duration, Field(gt=0.0)] = 300.0
    """An incident resolves once the SLI has been good this long (at the start of that good stretch)."""
    alerts: bool = True
    """Raise burn-rate alerts through the alerts plugin."""
    query_timeout: Annotated[Duration, Field(gt=0.0, le=60.0)] = 2.0
    """How long ``meshd sla`` waits for each region's answer before naming it as missing."""
    prometheus: PrometheusSource | None = None
    """Read this region's SLIs from Prometheus instead of the probes."""
    slo: RelPath | None = None
    """The objectives file; default ``slo.yaml`` beside this config if it exists, else the builtin plans' objectives."""
