"""Issued invoices and credit notes on the disk of a region in the tenant's jurisdiction, never rewritten.

One JSON file per document, ``<root>/<entity>/<number>.json``, created
exclusively (``O_EXCL``) and read-only: an issued invoice never changes;
a correction is a credit note, a document of its own. Writing the same
document again (a resumed run) is a no-op; a different one under an
existing number is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


class Immutable(RuntimeError):
    """A different document already holds this number."""


def canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def digest(doc: dict[str, Any]) -> str:
    """The document's content, number and issue time aside (what a rerun recomputes identically)."""
    body = {k: v for k, v in doc.items() if k not in ("number", "issued_at")}
    return hashlib.sha256(canonical(body)).hexdigest()


class InvoiceStore:
    def __init__(self, root: Path):
        self.root = root

    def path(self, entity: str, number: str) -> Path:
        return self.root / entity / f"{number}.json"

    def get(self, entity: str, number: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.path(entity, number).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def put(self, entity: str, doc: dict[str, Any]) -> Path:
        path = self.path(entity, doc["number"])
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True).encode() + b"\n"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        except FileExistsError:
            existing = self.get(entity, doc["number"])
            if existing is None or digest(existing) != digest(doc):
                raise Immutable(f"{path} already holds another document: an issued invoice never changes "
                                "(issue a credit note)") from None
            return path
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        return path

    def numbers(self, entity: str) -> list[str]:
        folder = self.root / entity
        return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
