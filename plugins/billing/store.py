"""Issued invoices and credit notes on the disk of a region in the tenant's jurisdiction, never rewritten.

One JSON file per document, ``<root>/<entity>/<number>.json``, created
exclusively (``O_EXCL``) and read-only: an issued invoice never changes;
a correction is a credit note, a document of its own. Writing the same
document again (a resumed run) is a no-op; a different one under an
existing number is refused.

With a keyring (``meshd_keyring(daemon, "invoices")``, the keys plugin) a
document is stored sealed, as the metering ledger stores its rows: the file
holds ``{"sealed": "invoice/v1", "ciphertext": ...}``, an AEAD ciphertext
whose associated data is the document's entity and number, so a sealed file
copied under another number does not open. Files written before the keyring
existed stay readable and are sealed by :meth:`InvoiceStore.seal_existing`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from meshd.kms import DataKeyring

PLAINTEXT = "plaintext"
KEYRING = "keyring"
SEALED_FORMAT = "invoice/v1"


class Immutable(RuntimeError):
    """A different document already holds this number."""


class StoreLocked(RuntimeError):
    """A sealed document cannot be opened: no keyring here, or not the keyring that sealed it."""


def canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def digest(doc: dict[str, Any]) -> str:
    """The document's content, number and issue time aside (what a rerun recomputes identically)."""
    body = {k: v for k, v in doc.items() if k not in ("number", "issued_at")}
    return hashlib.sha256(canonical(body)).hexdigest()


def _context(entity: str, number: str) -> dict[str, str]:
    return {"record": "invoice", "entity": entity, "number": number}


def is_sealed(raw: Any) -> bool:
    return isinstance(raw, dict) and raw.get("sealed") == SEALED_FORMAT and isinstance(raw.get("ciphertext"), str)


def _write_readonly(path: Path, data: bytes, *, exclusive: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o400)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


class InvoiceStore:
    def __init__(self, root: Path, keyring: DataKeyring | None = None):
        self.root = root
        self.keyring = keyring

    @property
    def mode(self) -> str:
        return KEYRING if self.keyring is not None else PLAINTEXT

    def path(self, entity: str, number: str) -> Path:
        return self.root / entity / f"{number}.json"

    def _encode(self, entity: str, doc: dict[str, Any]) -> bytes:
        body = json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True).encode() + b"\n"
        if self.keyring is None:
            return body
        sealed = self.keyring.encrypt(body, _context(entity, doc["number"]))
        return json.dumps({"sealed": SEALED_FORMAT, "ciphertext": sealed}).encode() + b"\n"

    def get(self, entity: str, number: str) -> dict[str, Any] | None:
        path = self.path(entity, number)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        if not is_sealed(raw):
            return raw  # type: ignore[no-any-return]
        if self.keyring is None:
            raise StoreLocked(f"{path} is encrypted and no keyring for purpose 'invoices' is available "
                              "(is the keys plugin enabled?)")
        try:
            doc = json.loads(self.keyring.decrypt(raw["ciphertext"], _context(entity, number)))
        except ValueError as exc:
            raise StoreLocked(f"{path} does not decrypt with this region's 'invoices' keyring: {exc}") from None
        return doc  # type: ignore[no-any-return]

    def put(self, entity: str, doc: dict[str, Any]) -> Path:
        path = self.path(entity, doc["number"])
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            _write_readonly(path, self._encode(entity, doc), exclusive=True)
        except FileExistsError:
            existing = self.get(entity, doc["number"])
            if existing is None or digest(existing) != digest(doc):
                raise Immutable(f"{path} already holds another document: an issued invoice never changes "
                                "(issue a credit note)") from None
        return path

    def entities(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []

    def numbers(self, entity: str) -> list[str]:
        folder = self.root / entity
        return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []

    def plaintext_files(self) -> Iterator[Path]:
        """Documents stored readable: every one when there is no keyring, else those written before it."""
        for entity in self.entities():
            for number in self.numbers(entity):
                path = self.path(entity, number)
                try:
                    raw = json.loads(path.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue  # unreadable is not proof of plaintext; get() reports it to the reader
                if not is_sealed(raw):
                    yield path

    def rewrap(self, rewrap: Callable[[str, dict[str, str]], str]) -> int:
        """Move every sealed document to the keyring's latest key version; the number rewritten.

        ``rewrap(ciphertext, context)`` is the keyring's. Each file is replaced
        whole (written beside, renamed over), so a crash halfway leaves every
        document readable and a rerun finishes the rest.
        """
        changed = 0
        for entity in self.entities():
            for number in self.numbers(entity):
                path = self.path(entity, number)
                raw = json.loads(path.read_text(encoding="utf-8"))
                if not is_sealed(raw):
                    continue
                new = rewrap(raw["ciphertext"], _context(entity, number))
                if new != raw["ciphertext"]:
                    self._replace(path, json.dumps({"sealed": SEALED_FORMAT, "ciphertext": new}).encode() + b"\n")
                    changed += 1
        return changed

    @staticmethod
    def _replace(path: Path, data: bytes) -> None:
        temporary = path.with_name(f".{path.stem}.sealing")
        temporary.unlink(missing_ok=True)
        _write_readonly(temporary, data, exclusive=True)
        os.replace(temporary, path)

    def seal_existing(self) -> int:
        """Seal every plaintext document in place (same content, so the same digest); the count sealed.

        The sealed copy is written beside it and renamed over it, so a crash
        leaves either the old file or the new one, never half of either.
        """
        if self.keyring is None:
            return 0
        count = 0
        for path in list(self.plaintext_files()):
            entity = path.parent.name
            doc = json.loads(path.read_text(encoding="utf-8"))
            self._replace(path, self._encode(entity, doc))
            count += 1
        return count
