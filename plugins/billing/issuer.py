"""Issuing: number a computed document, stamp it, keep it in the tenant's jurisdiction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .numbering import InvoiceNumbers
from .store import InvoiceStore, digest

DIGITS = 6


def format_number(prefix: str, number: int) -> str:
    return f"{prefix}{number:0{DIGITS}d}"


class KeptElsewhere(RuntimeError):
    """The document was issued and is kept by another region (of the same jurisdiction)."""

    def __init__(self, number: str, region: str):
        self.number, self.region = number, region
        super().__init__(f"{number} was issued by {region} and is kept there")


class Issuer:
    def __init__(self, numbers: InvoiceNumbers, store: InvoiceStore, prefixes: dict[str, str], region: str):
        self.numbers, self.store, self.prefixes, self.region = numbers, store, prefixes, region

    async def issue(self, doc: dict[str, Any], now: datetime | None = None) -> tuple[dict[str, Any], bool]:
        """The issued document and whether it was new; a rerun gets the document issued before."""
        entity = doc["seller"]["id"]
        if doc["type"] == "invoice":
            kind, subject = "invoice", f"{doc['customer']['tenant']}.{doc['period']}"
        else:
            kind, subject = "credit", doc["credits"]
        got = await self.numbers.number(entity, kind, subject, digest(doc))
        number = format_number(self.prefixes[entity], got.number)
        if got.issued_before:
            existing = self.store.get(entity, number)
            if existing is not None:
                return existing, False
            where = await self.numbers.stored_in(entity, got.number)
            if where is not None and where != self.region:
                raise KeptElsewhere(number, where)
            # else a run here took the number and died before storing: finish its work
        stamped = {**doc, "number": number,
                   "issued_at": (now or datetime.now(UTC)).isoformat(timespec="seconds")}
        self.store.put(entity, stamped)
        await self.numbers.mark_stored(entity, got.number, self.region)
        return stamped, not got.issued_before
