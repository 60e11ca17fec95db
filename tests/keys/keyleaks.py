"""Finding key bytes where they must never be: every key of a state dir, and the ways it could be spelled."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from pathlib import Path

from meshd_plugins.keys.kek import LocalKMSProvider, read_kek
from meshd_plugins.keys.keyfile import KeyringFile


def key_material(state_dirs: Iterable[Path]) -> list[bytes]:
    """Every secret byte string of the keyrings under ``state_dirs``: KEKs, data keys, index keys.

    Unwrapped here, in the test, with each region's KEK: the only way to know
    what must never show up on the bus or in a log.
    """
    out: list[bytes] = []
    for state in state_dirs:
        keys_dir = Path(state) / "keys"
        kek = read_kek(keys_dir / "kek")
        out.append(kek)
        provider = LocalKMSProvider(kek, "test")
        for path in sorted(keys_dir.glob("*.json")):
            doc, _ = KeyringFile(path).read()
            ctx = {"region": doc.region, "purpose": doc.purpose, "key_id": doc.key_id}
            out.append(provider.unwrap(doc.index_key, {**ctx, "version": "index"}))
            for version, rec in doc.versions.items():
                out.append(provider.unwrap(rec.wrapped, {**ctx, "version": str(version)}))
                out.append(rec.wrapped)  # wrapped keys stay home too
            out.append(doc.index_key)
    return out


def encodings(secret: bytes) -> list[tuple[str, bytes]]:
    """The ways key bytes could leak into text: raw, hex, and base64 (both alphabets) at every alignment.

    Inside a longer base64 string the key's characters depend on its offset
    modulo 3 and on its neighbours, so each alignment is encoded and only the
    characters made of key bits alone are kept.
    """
    forms = [("raw", secret), ("hex", binascii.hexlify(secret)), ("HEX", binascii.hexlify(secret).upper())]
    for offset in range(3):
        for name, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
            text = encode(b"\0" * offset + secret).rstrip(b"=")
            forms.append((f"{name}+{offset}", text[3:-3]))
    return forms


def leaks(haystack: bytes, secrets: Iterable[bytes]) -> list[str]:
    """Which secrets (by index and encoding) occur in ``haystack``."""
    return [f"secret {i} as {name}" for i, secret in enumerate(secrets)
            for name, form in encodings(secret) if form and form in haystack]
