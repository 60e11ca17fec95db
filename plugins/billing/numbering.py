"""Gap-free invoice numbers per seller entity, over a replicated key-value bucket (JetStream KV).

Number ``n`` of an entity exists once key ``n.<entity>.<n>`` was created;
a create is exclusive cluster-wide (:meth:`KeyValueStore.create`), so two
issuers can never both get ``n``. An issuer starts at the entity's head
(``head.<entity>``, a hint only ever pointing at a number that exists)
plus one and steps up past every number it finds taken, so it only ever
tries ``n`` once ``n - 1`` exists: no gap, no duplicate, whatever the
number of concurrent issuers, in one region or several.

One invoice per tenant and period (one credit note per invoice): before
taking a number an issuer claims ``ref.<entity>.<kind>.<subject>``
(create-only), and records the number there once it has it. A rerun finds
the number (the invoice was issued: it is not issued twice); a run that
died between the number and the record is resumed from the claim id the
number's record carries. A claim younger than ``stale_after`` belongs to
a run still working: the caller is told so (:class:`Busy`).

What the bucket holds is the tenant id, the period and a digest of the
document: no customer data, which stays in the tenant's jurisdiction
(:mod:`.store`).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from meshd.transport import KeyExists, KeyValueStore, RevisionMismatch

SCAN_SLACK = 300.0
"""Clock difference between issuers tolerated when looking for a dead run's number."""
MAX_SCAN = 10_000


class Busy(RuntimeError):
    """Another run is issuing this document right now."""


@dataclass(frozen=True)
class Numbered:
    number: int
    issued_before: bool
    """True when the number was taken by an earlier run (a rerun, or a resumed one)."""


def _dump(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


class InvoiceNumbers:
    def __init__(self, kv: KeyValueStore, *, stale_after: float = 600.0, clock: Any = time.time):
        self.kv, self.stale_after, self.clock = kv, stale_after, clock
        self.conflicts = 0
        """Numbers found taken by another issuer (a measure of contention)."""

    async def head(self, entity: str) -> int:
        entry = await self.kv.get(f"head.{entity}")
        return int(entry.value) if entry else 0

    async def record(self, entity: str, number: int) -> dict[str, Any] | None:
        entry = await self.kv.get(f"n.{entity}.{number}")
        return json.loads(entry.value) if entry else None

    async def mark_stored(self, entity: str, number: int, region: str) -> None:
        """Record which region keeps the document of ``number`` (a region name: no customer data)."""
        await self.kv.put(f"doc.{entity}.{number}", region.encode())

    async def stored_in(self, entity: str, number: int) -> str | None:
        entry = await self.kv.get(f"doc.{entity}.{number}")
        return entry.value.decode() if entry else None

    async def number(self, entity: str, kind: str, subject: str, digest: str) -> Numbered:
        """The number of document ``kind``/``subject`` (``invoice``/``tenant.period``), taking one if it has none."""
        ref = f"ref.{entity}.{kind}.{subject}"
        claim = {"claim": uuid.uuid4().hex, "at": self.clock()}
        try:
            revision = await self.kv.create(ref, _dump(claim))
        except KeyExists:
            found = await self._existing(entity, ref)
            if isinstance(found, Numbered):
                return found
            claim, revision = found
        record = {"kind": kind, "subject": subject, "digest": digest, "claim": claim["claim"], "at": self.clock()}
        number = await self._take(entity, record)
        await self._settle(ref, claim, number, revision)
        return Numbered(number, False)

    async def _existing(self, entity: str, ref: str) -> Numbered | tuple[dict[str, Any], int]:
        """An issued number, or (a claim of ours, its revision) when a dead run's claim was taken over."""
        entry = await self.kv.get(ref)
        assert entry is not None  # refs are never deleted
        held = json.loads(entry.value)
        if held.get("number"):
            return Numbered(int(held["number"]), True)
        number = await self._find(entity, held)
        if number is not None:
            await self._settle(ref, held, number, entry.revision)
            return Numbered(number, True)
        if self.clock() - held["at"] < self.stale_after:
            raise Busy(f"{ref} is being issued by another run (claimed {self.clock() - held['at']:.0f}s ago)")
        mine = {"claim": uuid.uuid4().hex, "at": self.clock()}
        try:
            return mine, await self.kv.update(ref, _dump(mine), entry.revision)
        except RevisionMismatch:
            raise Busy(f"{ref} was taken over by another run") from None

    async def _find(self, entity: str, claim: dict[str, Any]) -> int | None:
        """The number a dead run took for ``claim``: recent numbers, newest first."""
        head = await self.head(entity)
        n = head + 1
        while await self.record(entity, n) is not None:  # the head may lag behind
            n += 1
        for number in range(n - 1, max(0, n - 1 - MAX_SCAN), -1):
            rec = await self.record(entity, number)
            if rec is None:
                continue
            if rec.get("claim") == claim["claim"]:
                return number
            if rec.get("at", 0) < claim["at"] - SCAN_SLACK:
                break
        return None

    async def _take(self, entity: str, record: dict[str, Any]) -> int:
        n = await self.head(entity)
        value = _dump(record)
        while True:
            n += 1
            try:
                await self.kv.create(f"n.{entity}.{n}", value)
            except KeyExists:
                self.conflicts += 1
                continue
            await self._advance(entity, n)
            return n

    async def _advance(self, entity: str, n: int) -> None:
        """Move the head hint up to ``n`` (never down); losing a race to a higher head is fine."""
        key = f"head.{entity}"
        for _ in range(100):
            entry = await self.kv.get(key)
            if entry is None:
                try:
                    await self.kv.create(key, str(n).encode())
                    return
                except KeyExists:
                    continue
            if int(entry.value) >= n:
                return
            try:
                await self.kv.update(key, str(n).encode(), entry.revision)
                return
            except RevisionMismatch:
                continue

    async def _settle(self, ref: str, claim: dict[str, Any], number: int, revision: int) -> None:
        try:
            await self.kv.update(ref, _dump({**claim, "number": number}), revision)
        except RevisionMismatch:
            pass  # another run resumed the same claim and recorded the same number
