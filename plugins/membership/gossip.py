"""The piggyback queue: recent membership updates, each sent a bounded number of times.

Like memberlist's TransmitLimitedQueue: one entry per region (a newer claim
replaces an older one), handed out fewest-transmissions-first so fresh news
travels first, and dropped after ``limit`` transmissions. Pings, acks and
gossip messages carry at most ``max_piggyback`` entries each, so the bytes
per message stay bounded however large the federation.
"""

from __future__ import annotations

from dataclasses import dataclass

from .table import Claim


@dataclass
class _Entry:
    claim: Claim
    sent: int
    order: int


class TransmitQueue:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._order = 0

    def __len__(self) -> int:
        return len(self._entries)

    def subjects(self) -> set[str]:
        """The regions the queued claims are about."""
        return set(self._entries)

    def push(self, claim: Claim) -> None:
        """Queue ``claim`` unless a claim already queued about the same region outranks it."""
        current = self._entries.get(claim.region)
        if current is not None and not claim.outranks(current.claim):
            return
        self._order += 1
        self._entries[claim.region] = _Entry(claim, 0, self._order)

    def take(self, count: int, limit: int, exclude: str | None = None) -> list[Claim]:
        """Up to ``count`` claims to send now, each counted as one transmission.

        Claims about ``exclude`` (the receiver) are skipped: it learns its own
        state from the ``you`` field, which it acts on.
        """
        chosen = sorted((e for e in self._entries.values() if e.claim.region != exclude),
                        key=lambda e: (e.sent, -e.order))[:count]
        for entry in chosen:
            entry.sent += 1
            if entry.sent >= limit:
                self._entries.pop(entry.claim.region, None)
        return [e.claim for e in chosen]

    def drop(self, region: str) -> None:
        self._entries.pop(region, None)
