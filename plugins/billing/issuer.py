"""Issuing: number a computed document, stamp it, keep it in the tenant's jurisdiction."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from .numbering import InvoiceNumbers
from .store import InvoiceStore, digest

DIGITS = 6


def format_number(prefix: str, number: int) -> str:
    return f"{prefix}{number:0{DIGITS}d}"


class Issuer:
    def __init__(self, numbers: InvoiceNumbers, store: InvoiceStore, prefixes: dict[str, str]):
        self.numbers, self.store, self.prefixes = numbers, store, prefixes

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
        stamped = {**doc, "number": number,
                   "issued_at": (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")}
        self.store.put(entity, stamped)
        return stamped, not got.issued_before
