"""The key-encryption-key provider contract (``meshd_kms_provider``)."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Protocol

WRAP_CONTEXT_FIELDS = ("region", "purpose", "key_id")
"""What every wrap is bound to: a wrapped key moved to another region, purpose or keyring does not unwrap."""


class KMSUnavailableError(Exception):
    """The provider's KMS could not be reached or did not answer (network, auth, throttling).

    Distinct from :class:`ValueError` (the KMS answered: this wrapped key is
    not for this context or key): an outage is worth retrying and alerting
    on, a mismatch never is.
    """


def wrap_context(context: Mapping[str, str]) -> dict[str, str]:
    """``context`` as a plain ``str -> str`` dict; :class:`ValueError` naming any missing or empty field.

    Every provider calls it first in ``wrap`` and ``unwrap``, so that no
    provider can wrap a key bound to nothing.
    """
    missing = [f for f in WRAP_CONTEXT_FIELDS if not context.get(f)]
    if missing:
        raise ValueError(f"the wrap context lacks {', '.join(missing)} (needs {', '.join(WRAP_CONTEXT_FIELDS)})")
    out: dict[str, str] = {}
    for key, value in context.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(f"wrap context item {key!r} must be a string with a string value")
        out[key] = value
    return out


def context_bytes(context: Mapping[str, str]) -> bytes:
    """Canonical associated data for ``context``: sorted, every key and value length-prefixed.

    For providers whose KMS takes opaque associated data (AES-GCM, Transit's
    ``associated_data``); providers whose KMS takes a map (AWS KMS's
    EncryptionContext) pass the map itself.
    """
    out = [b"meshd-wrap/1"]
    for key, value in sorted(context.items()):
        kb, vb = key.encode(), value.encode()
        out += [len(kb).to_bytes(2, "big"), kb, len(vb).to_bytes(2, "big"), vb]
    return b"".join(out)


class KMSProvider(abc.ABC):
    """Wraps and unwraps data keys with a key-encryption key held elsewhere.

    A provider never exposes the KEK itself. ``wrap`` and ``unwrap`` must be
    inverse for the provider's lifetime and across restarts; ``unwrap`` of
    anything ``wrap`` did not produce (or with other ``context``) must raise
    :class:`ValueError`, never return wrong bytes. ``context`` always holds
    :data:`WRAP_CONTEXT_FIELDS` (check it with :func:`wrap_context`) and the
    provider binds all of it, e.g. as associated data or encryption context.
    A KMS that cannot be reached raises :class:`KMSUnavailableError`.
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

    def check(self) -> None:  # noqa: B027 - optional: a provider with nothing to reach keeps this no-op
        """Reach the KMS cheaply (no key material); :class:`KMSUnavailableError` if it does not answer.

        The keys plugin calls it every ``check_interval`` from a worker
        thread, to report an outage while it keeps encrypting with the data
        keys it already unwrapped. The default (a KEK held in memory) is
        always available.
        """


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
