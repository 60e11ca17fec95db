"""Errors of the keys plugin: one code per problem, a message in every language.

Every error carries a ``code`` (its message is ``keys.error.<code>`` in
``locales/<lang>/keys.yaml``) and the ``params`` of that message. ``str()``
is the English text, for logs; the CLI shows ``t(f"keys.error.{code}")``
in the user's language. Params never hold plaintext or key bytes: only
names, versions, paths and sizes.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from meshd.i18n import Translator


@lru_cache(maxsize=1)
def _english() -> Translator:
    return Translator("en")


class KeysError(Exception):
    """A problem with keys, keyrings or ciphertext; ``code`` names it."""

    def __init__(self, code: str, **params: Any):
        self.code = code
        self.params = params
        super().__init__(_english()(f"keys.error.{code}", **params))

    def translated(self, t: Translator) -> str:
        """The message in ``t``'s language."""
        return t(f"keys.error.{self.code}", **self.params)


class CiphertextError(KeysError, ValueError):
    """A ciphertext that does not decrypt: malformed, tampered, wrong context, unknown or retired version.

    A ValueError too, as :class:`meshd.kms.DataKeyring` promises.
    """


class KEKError(KeysError):
    """The key-encryption key is missing, exposed, malformed or not the one the keyrings were wrapped with."""


class KeyringError(KeysError):
    """A keyring file is missing or damaged, or a request about it is invalid."""


class PolicyError(KeysError, ValueError):
    """A setting that the keyring refuses (a minimum version out of range...)."""
