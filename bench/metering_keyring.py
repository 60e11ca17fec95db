"""A stand-in keyring for tests and benchmarks of the ledger's encryption. NOT for production.

The keys plugin provides the real ``meshd_keyring``. Until a deployment has
it, and in tests that must not depend on it, :class:`SeededKeyring` is a
small but complete :class:`meshd.kms.DataKeyring`: AES-256-GCM with the
context as associated data, HMAC-SHA256 blind indexes. Its keys derive from
a seed that is not secret (the region name by default), so a restarted
daemon reads its ledger again, and so it protects nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from meshd import hookimpl

PREFIX = "meshd:v1:"


class SeededKeyring:
    def __init__(self, seed: str = "test"):
        root = hashlib.sha256(f"meshd-test-keyring:{seed}".encode()).digest()
        self._aead = AESGCM(hmac.new(root, b"enc", hashlib.sha256).digest())
        self._mac = hmac.new(root, b"mac", hashlib.sha256).digest()
        self.encryptions = 0

    @staticmethod
    def _aad(context: Mapping[str, str]) -> bytes:
        return json.dumps(dict(context), sort_keys=True).encode()

    def encrypt(self, plaintext: bytes, context: Mapping[str, str]) -> str:
        nonce = os.urandom(12)
        self.encryptions += 1
        return PREFIX + base64.b64encode(nonce + self._aead.encrypt(nonce, plaintext, self._aad(context))).decode()

    def decrypt(self, ciphertext: str, context: Mapping[str, str]) -> bytes:
        if not ciphertext.startswith(PREFIX):
            raise ValueError("not a meshd:v1 ciphertext")
        raw = base64.b64decode(ciphertext[len(PREFIX):])
        try:
            return self._aead.decrypt(raw[:12], raw[12:], self._aad(context))
        except InvalidTag:
            raise ValueError("ciphertext was tampered with or belongs to another context") from None

    def blind_index(self, value: bytes) -> str:
        return hmac.new(self._mac, value, hashlib.sha256).hexdigest()[:32]


class SeededKeyringPlugin:
    """Answers ``meshd_keyring(daemon, "metering")`` with a SeededKeyring of the daemon's region."""

    @hookimpl
    def meshd_keyring(self, daemon: Any, purpose: str) -> SeededKeyring | None:
        return SeededKeyring(daemon.region) if purpose == "metering" else None
