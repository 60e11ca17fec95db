"""The key-encryption-key provider contract (``meshd_kms_provider``)."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Protocol


class KMSProvider(abc.ABC):
    """Wraps and unwraps data keys with a key-encryption key held elsewhere.

    A provider never exposes the KEK itself. ``wrap`` and ``unwrap`` must be
    inverse for the provider's lifetime and across restarts; ``unwrap`` of
    anything ``wrap`` did not produce (or with other ``context``) must raise,
    never return wrong bytes.
    """

    name: str = "abstract"

    @abc.abstractmethod
    def wrap(self, plaintext_key: bytes, context: dict[str, str]) -> bytes:
        """Encrypt a data key under the KEK, binding ``context`` as associated data."""

    @abc.abstractmethod
    def unwrap(self, wrapped_key: bytes, context: dict[str, str]) -> bytes:
        """Decrypt a data key wrapped by :meth:`wrap` with the same ``context``; raise on any mismatch."""

    def describe(self) -> dict[str, str]:
        """Non-secret facts for ``meshd keys status`` (KEK id, location)."""
        return {"provider": self.name}


class DataKeyring(Protocol):
    """Envelope encryption for other plugins, from ``meshd_keyring`` (the keys plugin).

    Ciphertexts carry their key version; ``context`` is bound as associated
    data, so a value decrypts only in the context it was written for (tenant,
    region, purpose). Key material never leaves the region.
    """

    def encrypt(self, plaintext: bytes, context: Mapping[str, str]) -> str:
        """``meshd:vN:<base64>`` for ``plaintext`` under the latest key version."""
        ...

    def decrypt(self, ciphertext: str, context: Mapping[str, str]) -> bytes:
        """The plaintext; raises ValueError naming the problem (tampered, wrong context, retired version)."""
        ...

    def blind_index(self, value: bytes) -> str:
        """A keyed, deterministic digest of ``value`` (HMAC), to look records up without decrypting them."""
        ...
