"""The ``failover:`` section of a region's daemon config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from meshd.config import LoadedConfig, RelPath, StrictModel
from meshd.durations import Duration

BUCKET_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
LAN_PROBE_INTERVAL = 0.5
"""membership's ``lan`` probe interval: the anchor when no membership section says otherwise."""
LEASE_RENEWALS = 3
"""A vote's lease spans this many renewals: it survives two lost or late ones in a row."""

Positive = Annotated[Duration, Field(gt=0)]


class KVSettings(StrictModel):
    """The JetStream KV bucket every region commits decisions to (the fencing point)."""

    bucket: Annotated[str, Field(pattern=BUCKET_PATTERN)] = "meshd_failover"
    replicas: Literal["auto"] | Annotated[int, Field(ge=1, le=5)] = "auto"
    """``auto``: 3 when the server is part of a cluster, 1 on a single server."""


class ManualSettings(StrictModel):
    """Operators' requests (``meshd failover`` / ``meshd failback``)."""

    min_requesters: Annotated[int, Field(ge=1)] = 2
    """Distinct regions whose operators must request a failover of a region the voters still see up
    before they vote for it without evidence of their own (a two-person rule; 1 turns it off)."""


class FailoverConfig(StrictModel):
    """How this region takes part in failover and failback votes."""

    enabled: bool = True
    """False: this daemon never votes or commits (it still applies committed decisions)."""
    quorum: Annotated[int, Field(ge=1)] | None = None
    """Votes a decision needs; default and minimum: a strict majority of the configured regions."""
    hold_down: Duration = 60.0
    """A failed-over region must be seen alive this long before an automatic failback."""
    flap_window: Duration = 600.0
    """A region that fails again within this long after its failback stays failed over (no auto failback)."""
    failback: Literal["auto", "manual"] = "auto"
    vote_timeout: Positive = 10.0
    """A term that has not reached quorum this long after it opened is abandoned; the next term opens."""
    rejoin_grace: Duration = 2.0
    """After the bus comes back, wait this long (for membership to refresh) before voting a failover."""
    poll_interval: Positive = 2.0
    """How often the KV bucket is read for decisions this daemon missed (the bus notice is the fast path)."""
    tick: Positive = 0.25
    rebroadcast: Positive | None = None
    """How often a voter renews its open votes; default: membership's ``probe_interval`` (lan 0.5 s, wan 2 s)."""
    lease: Positive | None = None
    """A vote not renewed for this long lapses; default: 3 x ``rebroadcast`` (lan 1.5 s, wan 6 s)."""
    dr_config: RelPath = Path("dr_config.yaml")
    kv: KVSettings = Field(default_factory=KVSettings)
    manual: ManualSettings = Field(default_factory=ManualSettings)


def dr_config_path(config: LoadedConfig) -> Path:
    """The DR file of ``config``; a relative path (the default among them) is beside the config file."""
    path: Path = config.plugin("failover").dr_config
    return path if path.is_absolute() else config.path.parent / path


def strict_majority(configured: int) -> int:
    """Votes for a strict majority of ``configured`` regions (7 -> 4, 6 -> 4, 2 -> 2)."""
    return configured // 2 + 1


def vote_timing(config: LoadedConfig) -> tuple[float, float]:
    """(rebroadcast, lease) of ``config``: set in ``failover:``, or derived from the membership profile.

    A vote must be renewed about as often as membership expects a message to cross the bus and
    back, which its ``probe_interval`` already states for the network it runs on (``lan``/``wan``),
    so a WAN federation gets a WAN lease instead of votes lapsing between renewals.
    """
    cfg: FailoverConfig = config.plugin("failover")
    rebroadcast = cfg.rebroadcast or _probe_interval(config)
    return rebroadcast, cfg.lease or LEASE_RENEWALS * rebroadcast


def _probe_interval(config: LoadedConfig) -> float:
    # Read through the loaded config, not by importing the membership plugin (plugins stay
    # independent): a daemon without it, or with another membership plugin, gets the lan anchor.
    section: Any = config.plugin_sections.get("membership")
    timing = getattr(section, "timing", None)
    interval = getattr(timing(), "probe_interval", None) if callable(timing) else None
    return float(interval) if isinstance(interval, (int, float)) and interval > 0 else LAN_PROBE_INTERVAL
