"""The ``failover:`` section of a region's daemon config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from meshd.config import LoadedConfig, RelPath, StrictModel
from meshd.durations import Duration

BUCKET_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"

Positive = Annotated[Duration, Field(gt=0)]


class KVSettings(StrictModel):
    """The JetStream KV bucket every region commits decisions to (the fencing point)."""

    bucket: Annotated[str, Field(pattern=BUCKET_PATTERN)] = "meshd_failover"
    replicas: Literal["auto"] | Annotated[int, Field(ge=1, le=5)] = "auto"
    """``auto``: 3 when the server is part of a cluster, 1 on a single server."""


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
    dr_config: RelPath = Path("dr_config.yaml")
    kv: KVSettings = Field(default_factory=KVSettings)


def dr_config_path(config: LoadedConfig) -> Path:
    """The DR file of ``config``; a relative path (the default among them) is beside the config file."""
    path: Path = config.plugin("failover").dr_config
    return path if path.is_absolute() else config.path.parent / path


def strict_majority(configured: int) -> int:
    """Votes for a strict majority of ``configured`` regions (7 -> 4, 6 -> 4, 2 -> 2)."""
    return configured // 2 + 1
