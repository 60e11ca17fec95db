"""Region identities: Ed25519 signing keys and the federation's trust bundle."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .config import TrustBundle


def generate_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_key_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_b64(key: Ed25519PublicKey) -> str:
    return base64.b64encode(public_key_bytes(key)).decode()


def key_id(key: Ed25519PublicKey) -> str:
    """A short, stable name for a public key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_key_bytes(key)).hexdigest()[:16]


def write_private_key(key: Ed25519PrivateKey, path: Path) -> None:
    """Write ``key`` as PKCS#8 PEM, created with mode 0600 (never world-readable, not even briefly)."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, pem)
    finally:
        os.close(fd)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read a PEM Ed25519 private key; raise ValueError (without the key's bytes) if it is not one."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError):
        raise ValueError("not a PEM-encoded, unencrypted private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 key")
    return key


def load_public_key(b64: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(b64, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError):
        raise ValueError("not a base64 Ed25519 public key (32 bytes)") from None


class Signer:
    """Signs with this region's key; the key never leaves this object."""

    def __init__(self, key: Ed25519PrivateKey):
        self._key = key
        self.key_id = key_id(key.public_key())

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def __repr__(self) -> str:  # never show key material, even in a traceback
        return f"Signer(key_id={self.key_id!r})"


class TrustStore:
    """Public keys by region, from the trust bundle: who may speak for whom."""

    def __init__(self, bundle: TrustBundle):
        self.federation = bundle.federation
        self._keys: dict[str, tuple[str, Ed25519PublicKey]] = {}
        for region, entry in bundle.keys.items():
            self._keys[region] = (entry.key_id, load_public_key(entry.public_key))

    def __contains__(self, region: str) -> bool:
        return region in self._keys

    def verify(self, region: str, kid: str, data: bytes, signature: bytes) -> bool:
        """True when ``signature`` over ``data`` is by ``region``'s key named ``kid``."""
        entry = self._keys.get(region)
        if entry is None or entry[0] != kid:
            return False
        try:
            entry[1].verify(signature, data)
        except InvalidSignature:
            return False
        return True
