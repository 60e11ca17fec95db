"""The ``metering:`` section of a region's daemon config."""

from __future__ import annotations

import re
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from meshd.config import RelPath, StrictModel
from meshd.durations import Duration, Size

DAY = 86400.0
MIN_DEDUP_RETENTION = 32 * DAY
"""(source, id) dedup records live at least this long (OpenMeter keeps them 32 days too)."""

MAX_PARTITIONS = 256
"""One partition per tenant bucket at most (see subjects.BUCKETS)."""
_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")

MeterName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]{0,62}$")]


class MeterKind(str, Enum):
    """How a meter folds its events into one number."""

    SUM = "SUM"
    COUNT = "COUNT"
    MAX = "MAX"
    UNIQUE_COUNT = "UNIQUE_COUNT"
    LATEST = "LATEST"


class MeterConfig(StrictModel):
    kind: MeterKind
    description: str = ""
    unit: str = ""


class StreamConfig(StrictModel):
    """The region's JetStream stream of raw usage messages."""

    replicas: int = Field(default=1, ge=1, le=5)
    """R3 in production, on the NATS nodes of this region's cluster (see placement_tags)."""
    duplicate_window: Duration = Field(default=120.0, gt=0)
    """JetStream drops a message whose Nats-Msg-Id it saw within this window."""
    max_bytes: Size = Field(default=0, ge=0)
    """Backlog bound (0: only the server's JetStream limits). JetStream reserves it up front, so size it
    for the longest daemon outage to ride out; when full, publishers get an error, nothing is dropped."""
    placement_tags: list[str] = Field(default_factory=list)
    """Server tags the stream's replicas must carry, so a stretched cluster keeps them in this jurisdiction."""
    placement_cluster: str | None = None


def parse_ranges(text: str) -> list[int]:
    """``"0-3,6"`` -> [0, 1, 2, 3, 6]; ValueError naming the piece that is not a partition range."""
    out: set[int] = set()
    for piece in str(text).split(","):
        match = _RANGE.match(piece)
        if not match:
            raise ValueError(f"{piece.strip()!r} is not a partition or a range of partitions (like 0-3)")
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        if last < first:
            raise ValueError(f"{piece.strip()!r}: the range ends before it starts")
        out.update(range(first, last + 1))
    return sorted(out)


def check_partitions(wanted: list[int], partitions: int) -> list[int]:
    beyond = [p for p in wanted if p >= partitions]
    if beyond:
        raise ValueError(f"partition {beyond[0]} does not exist: metering.partitions is {partitions} "
                         f"(partitions 0-{partitions - 1})")
    return wanted


class MeteringConfig(StrictModel):
    """Usage metering: meters, the ingestion stream, the ledger and its guarantees."""

    meters: dict[MeterName, MeterConfig] = Field(default_factory=dict)
    """No meters: the plugin stays idle (no stream, no consumer)."""
    stream: StreamConfig = Field(default_factory=StreamConfig)
    ledger_path: RelPath | None = None
    """SQLite ledger; default ``<state_dir>/metering/ledger.sqlite3``."""
    dedup_retention: Duration = 35 * DAY
    max_event_age: Duration = Field(default=31 * DAY, gt=0)
    """Older events are rejected (too_old): with max_event_age + future_skew <= dedup_retention a
    duplicate that outlives its dedup record is always too old to be counted again."""
    future_skew: Duration = Field(default=300.0, ge=0)
    require_encryption: bool = False
    """Refuse to write the ledger without a keyring instead of storing plaintext."""
    fetch_batch: int = Field(default=128, ge=1, le=4096)
    """At most this many JetStream messages per ledger transaction (what arrives during a commit is gathered)."""
    ack_wait: Duration = Field(default=30.0, gt=0)
    """A fetched batch not acknowledged within it is delivered again (it must exceed one commit)."""
    max_ack_pending: int = Field(default=4096, ge=1)
    query_timeout: Duration = Field(default=3.0, gt=0)
    query_max_members: int = Field(default=8000, ge=0)
    """UNIQUE_COUNT digests a region sends with a query answer; beyond it the merge is an upper bound."""
    record_wait: Duration = Field(default=5.0, ge=0)
    """How long ``meshd usage record`` waits for the ledger commit."""
    alert_interval: Duration = Field(default=60.0, gt=0)
    alert_resolve_after: Duration = Field(default=600.0, gt=0)
    prune_interval: Duration = Field(default=6 * 3600.0, gt=0)
    """How often expired dedup records are swept (a sweep reads the whole table)."""
    partitions: int = Field(default=1, ge=1, le=MAX_PARTITIONS)
    """Ledger shards, each fed by its own consumer; tenants are spread by hash (see docs/metering.md)."""
    ingest: Literal["local", "none"] | list[str | int] = "local"
    """Which partitions this daemon ingests itself: every one (local), none (``meshd ingest`` workers
    do), or a list of partitions and ranges like ``["0-1"]``."""

    @field_validator("dedup_retention")
    @classmethod
    def _long_enough(cls, value: float) -> float:
        if value < MIN_DEDUP_RETENTION:
            raise ValueError(f"must be at least 32d (a redelivery a month later must still be recognized), "
                             f"not {value / DAY:g}d")
        return value

    @field_validator("ingest")
    @classmethod
    def _ranges(cls, value: Any) -> Any:
        if isinstance(value, list):
            for item in value:
                parse_ranges(str(item))
        return value

    def local_partitions(self) -> list[int]:
        """The partitions this daemon's own ingestion covers."""
        if self.ingest == "local":
            return list(range(self.partitions))
        if self.ingest == "none":
            return []
        return sorted({p for item in self.ingest for p in parse_ranges(str(item))})

    def model_post_init(self, _context: Any) -> None:
        if isinstance(self.ingest, list):
            check_partitions(self.local_partitions(), self.partitions)
        if self.max_event_age + self.future_skew > self.dedup_retention:
            raise ValueError(
                "max_event_age + future_skew must not exceed dedup_retention, or a late duplicate "
                "could outlive its dedup record and be counted twice"
            )

    @property
    def enabled(self) -> bool:
        return bool(self.meters)

    def kinds(self) -> dict[str, MeterKind]:
        return {name: meter.kind for name, meter in self.meters.items()}
