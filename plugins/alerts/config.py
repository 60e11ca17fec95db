"""The ``alerts:`` section of a region's daemon config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from meshd.config import Name, RelPath, Secret, StrictModel
from meshd.durations import Duration

SECTION = "alerts"
BUCKET = r"^[A-Za-z0-9_-]{1,64}$"
ROUTES_FILE = "alert_routes.yaml"


class DeliverySettings(StrictModel):
    """How the outbox is delivered: deadlines, retries, backoff."""

    concurrency: Annotated[int, Field(ge=1, le=64)] = 8
    """Sends in flight at once (each one in a worker thread)."""
    backoff_initial: Annotated[Duration, Field(gt=0)] = 1.0
    backoff_max: Annotated[Duration, Field(gt=0)] = 60.0
    jitter: Annotated[float, Field(ge=0, le=1)] = 0.2
    """Each delay is drawn from [d*(1-jitter), d] so that daemons retrying together spread out."""
    retry_after_max: Annotated[Duration, Field(gt=0)] = 600.0
    """A Retry-After longer than this is cut to it."""
    rate_limited_min: Duration = 5.0
    """Smallest wait after a 429 whose Retry-After meshd cannot see (apprise hides response headers)."""
    give_up_after: Annotated[Duration, Field(gt=0)] = 86400.0
    """A notification still undelivered this long after it was queued is dropped, and NotifierBroken raised."""
    broken_after: Annotated[Duration, Field(gt=0)] = 120.0
    """A receiver failing this long (or failing for good once) raises NotifierBroken."""
    keep: Duration = 7 * 86400.0
    """How long finished outbox rows are kept (for ``meshd alerts list`` and post-mortems)."""


class DedupSettings(StrictModel):
    """The federation-wide notification log in JetStream KV: one notification per group for the federation."""

    bucket: Annotated[str, Field(pattern=BUCKET)] = "meshd_alerts_nflog"
    replicas: Literal["auto"] | Annotated[int, Field(ge=1, le=5)] = "auto"
    """``auto``: 3 on a NATS cluster, 1 on a single server."""
    retention: Annotated[Duration, Field(gt=0)] = 120 * 3600.0
    """How long a group's last notification is remembered (Alertmanager keeps its log 120 h)."""
    lease: Annotated[Duration, Field(gt=0)] = 15.0
    """A sender that has not renewed its claim for this long is presumed dead; another daemon takes over."""
    poll: Annotated[Duration, Field(gt=0)] = 1.0
    """How often a daemon waiting on another's claim re-reads it."""
    fence_grace: Annotated[Duration, Field(gt=0)] = 15.0
    """When the KV cannot be reached for this long, send anyway (a duplicate beats a miss)."""
    stagger: Duration = 1.0
    """Without the KV, daemons send one after another by region rank, skipping what a peer announced."""
    timeout: Annotated[Duration, Field(gt=0)] = 3.0
    """Deadline of one KV operation."""


class SilenceSettings(StrictModel):
    bucket: Annotated[str, Field(pattern=BUCKET)] = "meshd_alerts_silences"
    refresh: Annotated[Duration, Field(gt=0)] = 10.0
    """How often silences are re-read from the KV (changes also arrive at once over the bus)."""


class DeadMansSwitch(StrictModel):
    """An alert that always fires: route it to a heartbeat receiver so a broken pipeline is noticed."""

    enabled: bool = True
    refresh: Annotated[Duration, Field(gt=0)] = 60.0


class AlertsConfig(StrictModel):
    """``alerts:`` in a region's config."""

    routes_file: RelPath = Field(default=Path(ROUTES_FILE), validate_default=True)
    """The routing file; default alert_routes.yaml beside this config. Without one, alerts are only logged."""
    secrets: dict[Name, Secret] = Field(default_factory=dict)
    """Receiver URLs the routing file names as ``{secret: NAME}``, usually ``!encrypted`` for this region."""
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    dedup: DedupSettings = Field(default_factory=DedupSettings)
    silences: SilenceSettings = Field(default_factory=SilenceSettings)
    deadman: DeadMansSwitch = Field(default_factory=DeadMansSwitch)
