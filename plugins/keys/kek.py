"""The builtin ``local`` KMS provider: a 256-bit key-encryption key from a file.

The KEK comes from one of:

* a file (default ``<state_dir>/keys/kek``), mode 0600 or stricter; a file
  that group or others can access is refused, never "fixed" silently;
* a systemd credential, ``$CREDENTIALS_DIRECTORY/<name>`` (``LoadCredential=``
  or ``SetCredentialEncrypted=`` in the unit; the latter keeps the KEK
  encrypted at rest by the host's TPM or credential key).

The file holds 32 raw bytes, or their base64 (what meshd writes). A missing
KEK file is created only when no keyring exists yet (a fresh region): over
existing keyrings a new KEK would silently make every key unreadable, so
that is an error naming the file to restore.

Data keys are wrapped with AES-256-GCM under the KEK, the wrap context
(region, purpose, key id, version) as associated data.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from meshd.kms import KMSProvider, context_bytes, wrap_context

from .errors import KEKError

WRAP_FORMAT = b"\x01"
KEK_SIZE = 32


def check_kek_file(path: Path) -> None:
    """Raise :class:`KEKError` unless ``path`` is a regular file only its owner can access."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KEKError("kek_not_found", path=str(path)) from None
    except OSError as exc:
        raise KEKError("kek_unreadable", path=str(path), reason=exc.strerror or str(exc)) from None
    if not stat.S_ISREG(st.st_mode):
        raise KEKError("kek_not_file", path=str(path))
    if st.st_mode & 0o077:
        raise KEKError("kek_permissions", path=str(path), mode=f"{stat.S_IMODE(st.st_mode):04o}")


def parse_kek(data: bytes, path: Path) -> bytes:
    """32 raw bytes, or the base64 of 32 bytes (whitespace around it allowed)."""
    if len(data) == KEK_SIZE:
        return data
    try:
        key = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KEKError("kek_invalid", path=str(path)) from None
    if len(key) != KEK_SIZE:
        raise KEKError("kek_invalid", path=str(path))
    return key


def read_kek(path: Path) -> bytes:
    check_kek_file(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KEKError("kek_unreadable", path=str(path), reason=exc.strerror or str(exc)) from None
    return parse_kek(data, path)


def create_kek_file(path: Path) -> None:
    """Write a new random KEK (base64) with mode 0600; never over an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, base64.b64encode(AESGCM.generate_key(256)) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def has_keyrings(keys_dir: Path) -> bool:
    return keys_dir.is_dir() and any(keys_dir.glob("*.json"))


def keyrings_wrapped_by(keys_dir: Path, provider: str) -> list[Path]:
    """The keyring files in ``keys_dir`` that record ``provider`` as their KEK (unreadable ones count:
    a damaged file is no proof that the KEK is no longer needed)."""
    found = []
    for path in sorted(keys_dir.glob("*.json")) if keys_dir.is_dir() else []:
        try:
            recorded = json.loads(path.read_text(encoding="utf-8")).get("kek", {}).get("provider", provider)
        except (OSError, ValueError, AttributeError):
            recorded = provider
        if recorded == provider:
            found.append(path)
    return found


def resolve_local_kek(settings: Mapping[str, Any]) -> tuple[Path, bool]:
    """``(path of the KEK, may it be created)`` from the ``local`` provider's settings."""
    credential = settings.get("kek_credential")
    if credential:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise KEKError("credential_no_dir", name=credential)
        return Path(directory) / credential, False
    explicit = settings.get("kek_file")
    if explicit:
        path = Path(explicit)
    else:
        path = Path(settings["keys_dir"]) / "kek"
    return path, bool(settings.get("create_kek", True))


class LocalKMSProvider(KMSProvider):
    """AES-256-GCM key wrapping under a KEK read from a local file or systemd credential."""

    name = "local"

    def __init__(self, kek: bytes, source: str):
        self._aead = AESGCM(kek)
        self._kek_id = hmac.digest(kek, b"meshd kek id/1", "sha256").hex()[:16]
        self._source = source

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> LocalKMSProvider:
        """Open the KEK the settings name, creating it for a fresh region; :class:`KEKError` otherwise."""
        path, may_create = resolve_local_kek(settings)
        keys_dir = Path(settings["keys_dir"])
        if not path.exists():
            if not may_create:
                raise KEKError("kek_not_found", path=str(path))
            if has_keyrings(keys_dir):
                raise KEKError("kek_missing", path=str(path), keys_dir=str(keys_dir))
            try:
                create_kek_file(path)
            except FileExistsError:
                pass  # another process (the CLI, the daemon) made it first
        source = f"credential {settings['kek_credential']}" if settings.get("kek_credential") else f"file {path}"
        return cls(read_kek(path), source)

    @property
    def kek_id(self) -> str:
        return self._kek_id

    def wrap(self, plaintext_key: bytes, context: dict[str, str]) -> bytes:
        nonce = os.urandom(12)
        return WRAP_FORMAT + nonce + self._aead.encrypt(nonce, plaintext_key, context_bytes(wrap_context(context)))

    def unwrap(self, wrapped_key: bytes, context: dict[str, str]) -> bytes:
        aad = context_bytes(wrap_context(context))
        if len(wrapped_key) < 1 + 12 + 16 or wrapped_key[:1] != WRAP_FORMAT:
            raise ValueError("not a key wrapped by the local provider")
        try:
            return self._aead.decrypt(wrapped_key[1:13], wrapped_key[13:], aad)
        except InvalidTag:
            raise ValueError("the KEK does not unwrap it (another KEK, or a damaged keyring file)") from None

    def describe(self) -> dict[str, str]:
        return {"provider": self.name, "kek_id": self._kek_id, "source": self._source}

    def __repr__(self) -> str:  # never show key material, even in a traceback
        return f"LocalKMSProvider(kek_id={self._kek_id!r}, source={self._source!r})"
