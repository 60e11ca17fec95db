"""The ``partners:`` section of a region's daemon config."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from meshd.config import RelPath, StrictModel
from meshd.durations import Duration

_UNITS = {"": 1, "b": 1, "kib": 1024, "kb": 1000, "mib": 1024 ** 2, "mb": 1000 ** 2}


def parse_size(value: Any) -> int:
    """``65536``, ``"64KiB"``, ``"1MiB"`` -> bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", str(value))
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"{value!r} is not a size; write e.g. 65536, 64KiB or 1MiB")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


Size = Annotated[int, BeforeValidator(parse_size)]


class TLSConfig(StrictModel):
    cert_file: RelPath
    key_file: RelPath


class RateLimit(StrictModel):
    """A token bucket per API key: ``per_second`` refill, ``burst`` capacity."""

    per_second: float = Field(default=20.0, gt=0)
    burst: int = Field(default=40, ge=1)


class PartnersConfig(StrictModel):
    """The partner HTTP API: its listener, limits, and what licenses it issues."""

    enabled: bool = False
    """Serve the partner API from this region (the key store is watched either way once enabled)."""
    listen: str = "127.0.0.1"
    port: int = Field(default=7480, ge=0, le=65535)
    """0 picks a free port (tests); the one in use is in ``meshd status``."""
    tls: TLSConfig | None = None
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    max_body: Size = Field(default=64 * 1024, gt=0)
    license_ttl: Duration = Field(default=365 * 86400.0, gt=0)
    plans: list[str] = Field(default_factory=list)
    """Plans a tenant may have when the billing plugin has no matrix (with billing, its plans)."""
    bucket: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = "meshd_partners"
    idempotency_bucket: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = "meshd_partner_idempotency"
    idempotency_ttl: Duration = Field(default=86400.0, gt=0)
    replicas: int = Field(default=1, ge=1, le=5)
    """JetStream KV replicas of the partner and idempotency buckets: 3 on a production cluster."""
    audit_log: RelPath | None = None
    """Default ``<state_dir>/partners/audit.log``."""
    shutdown_grace: Duration = Field(default=1.5, gt=0)
    """Seconds in-flight requests get to finish when the daemon stops."""
