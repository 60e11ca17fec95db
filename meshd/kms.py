"""The key-encryption-key provider contract (``meshd_kms_provider``)."""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from .hookspecs import hookimpl

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


# ---------------------------------------------------------------- for provider packages

PLACED_BY_MESHD = ("state_dir", "keys_dir")
"""Keys the keys plugin adds to ``keys.kms.settings`` for every provider (``region`` is kept: it names the
meshd region, which a provider may need)."""


class ProviderSettings(BaseModel):
    """Base of a provider's settings model: unknown keys refused, and errors that name the key, never its value."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    provider_name: ClassVar[str] = "kms"
    """The provider's name, at the start of every settings error."""

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        """The settings from what ``meshd_kms_provider`` received; ValueError naming each bad
        ``keys.kms.settings`` key (``include_input=False``: a token in a wrong place is not echoed)."""
        try:
            return cls(**{k: v for k, v in config.items() if k not in PLACED_BY_MESHD})
        except ValidationError as exc:
            problems = "; ".join(
                f"keys.kms.settings.{'.'.join(str(p) for p in err['loc']) or '(section)'}: {err['msg']}"
                for err in exc.errors(include_input=False, include_url=False))
            raise ValueError(f"{cls.provider_name}: {problems}") from None


def lazy_exports(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``names`` (attribute -> relative module) on first access.

    A provider package imports its cloud SDK only when the provider is used:
    every daemon and CLI run loads every installed plugin, most of them
    without using a given provider.
    """

    def __getattr__(attr: str) -> Any:
        if attr in names:
            return getattr(importlib.import_module(names[attr], package), attr)
        raise AttributeError(f"module {package!r} has no attribute {attr!r}")

    return __getattr__


class LazyProviderPlugin:
    """A plugin offering one KMS provider through ``meshd_kms_provider``, imported only when asked for.

    Subclasses set ``provider_name`` and ``provider`` / ``settings`` as
    ``"package.module:Class"``; the provider class is called with
    ``settings.from_config(config)``.
    """

    provider_name: ClassVar[str]
    provider: ClassVar[str]
    settings: ClassVar[str]

    @hookimpl
    def meshd_kms_provider(self, name: str, config: dict[str, Any]) -> KMSProvider | None:
        if name != self.provider_name:
            return None
        provider, settings = (getattr(importlib.import_module(m), c)
                              for m, c in (p.split(":") for p in (self.provider, self.settings)))
        result: KMSProvider = provider(settings.from_config(config))
        return result
