"""Every region's key metadata, as this daemon heard it on the bus.

Each daemon announces its keyrings' metadata (``meshd.<fed>.keys.<region>``,
type ``announce``) on every rotation, at start, every ``announce_interval``
and when a peer asks (type ``sync``). The metadata names a key and its
version, age and fingerprint, never key bytes (wrapped or not). The view
keeps the last announcement of each region, validated field by field: a
malformed one is dropped and counted, never half-applied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

ANNOUNCED_FIELDS = ("purpose", "key_id", "version", "created", "fingerprint", "rotate_by",
                    "min_decryption_version", "min_encryption_version")
MAX_KEYRINGS = 64


def announcement(described: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The public part of :meth:`KeyManager.describe` results, as sent on the bus."""
    return [{k: meta[k] for k in ANNOUNCED_FIELDS} for meta in described]


def _valid_entry(entry: Any) -> dict[str, Any] | None:
    if not isinstance(entry, dict):
        return None
    out: dict[str, Any] = {}
    for key in ("purpose", "key_id", "fingerprint"):
        value = entry.get(key)
        if not isinstance(value, str) or not 0 < len(value) <= 128:
            return None
        out[key] = value
    for key in ("version", "min_decryption_version", "min_encryption_version"):
        value = entry.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value < 2**32:
            return None
        out[key] = value
    for key in ("created", "rotate_by"):
        value = entry.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            return None
        out[key] = float(value)
    return out


@dataclass
class RegionKeys:
    received_at: float
    keyrings: dict[str, dict[str, Any]] = field(default_factory=dict)


class FederationView:
    """Last known key metadata of every region (this one included)."""

    def __init__(self, overdue_grace: float, stale_after: float):
        self.overdue_grace = overdue_grace
        self.stale_after = stale_after
        self._regions: dict[str, RegionKeys] = {}

    def update(self, region: str, keyrings: Any, now: float) -> bool:
        """Adopt ``region``'s announcement; False (nothing changed) if it is malformed."""
        if not isinstance(keyrings, list) or len(keyrings) > MAX_KEYRINGS:
            return False
        entries = [_valid_entry(e) for e in keyrings]
        if any(e is None for e in entries):
            return False
        self._regions[region] = RegionKeys(now, {e["purpose"]: e for e in entries if e is not None})
        return True

    def version_of(self, region: str, purpose: str) -> int | None:
        entry = self._regions.get(region)
        ring = entry.keyrings.get(purpose) if entry else None
        return ring["version"] if ring else None

    def overdue(self, now: float) -> set[tuple[str, str]]:
        """``(region, purpose)`` of every key past its rotation date by more than the grace."""
        return {(region, purpose)
                for region, entry in self._regions.items()
                for purpose, ring in entry.keyrings.items()
                if now > ring["rotate_by"] + self.overdue_grace}

    def snapshot(self, now: float) -> dict[str, Any]:
        """The ``federation`` part of ``/status``: per region, its keyrings with ages."""
        out: dict[str, Any] = {}
        for region in sorted(self._regions):
            entry = self._regions[region]
            out[region] = {
                "received_at": entry.received_at,
                "stale": now - entry.received_at > self.stale_after,
                "keyrings": [
                    {**ring, "age_s": round(max(0.0, now - ring["created"]), 3),
                     "overdue": now > ring["rotate_by"] + self.overdue_grace}
                    for _, ring in sorted(entry.keyrings.items())
                ],
            }
        return out
