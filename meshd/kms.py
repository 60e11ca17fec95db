"""The key-encryption-key provider contract (``meshd_kms_provider``)."""

from __future__ import annotations

import abc


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
