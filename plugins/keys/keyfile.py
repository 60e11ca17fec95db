"""A keyring's file: wrapped key versions and counters, written atomically, shared under a lock.

``<state_dir>/keys/<purpose>.json`` (mode 0600)::

    {
      "format": "meshd-keyring/1",
      "region": "eu-west-1", "purpose": "metering", "key_id": "k-5f0c2a9e1b7d4c3a",
      "kek": {"provider": "local", "kek_id": "9a1f..."},
      "min_decryption_version": 1, "min_encryption_version": 1,
      "index_key": "<base64 of the wrapped blind-index key>",
      "versions": [
        {"version": 1, "created": 1767225600.0, "wrapped": "<base64>",
         "fingerprint": "<32 hex>", "reserved": 1048576}
      ]
    }

``reserved`` is the encryption-count high-water mark of a version: a
process reserves a block of counts (writing the new mark and fsyncing)
before it uses any of them, so after a crash the next process starts above
every count that may have been used. Counts are over-estimated by at most
one block per crash, never under-estimated.

Writers (the daemon, and CLI commands such as ``meshd secrets encrypt`` on
the same host) take ``<purpose>.lock`` with ``flock`` and re-read the file
before changing it; readers need no lock because a write is a rename.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import KeyringError

FORMAT = "meshd-keyring/1"

Stamp = tuple[int, int, int]


@dataclass
class VersionRecord:
    version: int
    created: float
    wrapped: bytes
    fingerprint: str
    reserved: int = 0


@dataclass
class KeyringDoc:
    region: str
    purpose: str
    key_id: str
    kek: dict[str, str]
    index_key: bytes
    versions: dict[int, VersionRecord] = field(default_factory=dict)
    min_decryption_version: int = 1
    min_encryption_version: int = 1

    @property
    def latest(self) -> int:
        return max(self.versions)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "region": self.region,
            "purpose": self.purpose,
            "key_id": self.key_id,
            "kek": dict(self.kek),
            "min_decryption_version": self.min_decryption_version,
            "min_encryption_version": self.min_encryption_version,
            "index_key": base64.b64encode(self.index_key).decode(),
            "versions": [
                {"version": r.version, "created": r.created, "wrapped": base64.b64encode(r.wrapped).decode(),
                 "fingerprint": r.fingerprint, "reserved": r.reserved}
                for r in sorted(self.versions.values(), key=lambda r: r.version)
            ],
        }

    @classmethod
    def from_json(cls, data: Any, path: Path) -> KeyringDoc:
        def bad(detail: str) -> KeyringError:
            return KeyringError("keyring_corrupt", path=str(path), detail=detail)

        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise bad(f"not a {FORMAT} document")

        def text(obj: dict[str, Any], key: str) -> str:
            value = obj.get(key)
            if not isinstance(value, str) or not value:
                raise bad(f"{key} must be a non-empty string")
            return value

        def integer(obj: dict[str, Any], key: str, low: int = 0) -> int:
            value = obj.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise bad(f"{key} must be an integer >= {low}")
            return value

        def b64(obj: dict[str, Any], key: str) -> bytes:
            try:
                return base64.b64decode(text(obj, key), validate=True)
            except (binascii.Error, ValueError):
                raise bad(f"{key} is not base64") from None

        kek = data.get("kek")
        if not isinstance(kek, dict) or not all(isinstance(v, str) for v in kek.values()):
            raise bad("kek must map names to strings")
        versions: dict[int, VersionRecord] = {}
        raw_versions = data.get("versions")
        if not isinstance(raw_versions, list) or not raw_versions:
            raise bad("versions must be a non-empty list")
        for entry in raw_versions:
            if not isinstance(entry, dict):
                raise bad("each version must be a mapping")
            version = integer(entry, "version", 1)
            created = entry.get("created")
            if not isinstance(created, (int, float)) or isinstance(created, bool):
                raise bad(f"version {version}: created must be a number")
            if version in versions:
                raise bad(f"version {version} appears twice")
            versions[version] = VersionRecord(version, float(created), b64(entry, "wrapped"),
                                              text(entry, "fingerprint"), integer(entry, "reserved"))
        doc = cls(region=text(data, "region"), purpose=text(data, "purpose"), key_id=text(data, "key_id"),
                  kek=dict(kek), index_key=b64(data, "index_key"), versions=versions,
                  min_decryption_version=integer(data, "min_decryption_version", 1),
                  min_encryption_version=integer(data, "min_encryption_version", 1))
        if doc.min_decryption_version > doc.latest or doc.min_encryption_version > doc.latest:
            raise bad("a minimum version is above the latest version")
        return doc


class KeyringFile:
    """Reading, atomically writing and locking one keyring file."""

    def __init__(self, path: Path):
        self.path = path
        self.lock_path = path.with_suffix(".lock")

    def exists(self) -> bool:
        return self.path.is_file()

    def stamp(self) -> Stamp | None:
        """Identity of the file's current content (inode, mtime, size), to notice other writers."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def read(self) -> tuple[KeyringDoc, Stamp]:
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                raw = f.read()
        except FileNotFoundError:
            raise KeyringError("no_keyring", purpose=self.path.stem, keys_dir=str(self.path.parent)) from None
        except OSError as exc:
            raise KeyringError("keyring_corrupt", path=str(self.path), detail=exc.strerror or str(exc)) from None
        try:
            data = json.loads(raw)
        except ValueError:
            raise KeyringError("keyring_corrupt", path=str(self.path), detail="not JSON") from None
        return KeyringDoc.from_json(data, self.path), (st.st_ino, st.st_mtime_ns, st.st_size)

    def write(self, doc: KeyringDoc) -> Stamp:
        """Replace the file with ``doc``: temp file, fsync, rename, fsync the directory."""
        data = json.dumps(doc.to_json(), indent=1).encode() + b"\n"
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        stamp = self.stamp()
        assert stamp is not None
        return stamp

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive across processes (``flock``); callers also hold a thread lock."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock
