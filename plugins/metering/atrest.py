"""How the ledger protects tenant identifiers and values at rest.

With a keyring (``meshd_keyring(daemon, "metering")``, the keys plugin):
tenant ids are stored as blind indexes (a keyed HMAC, so rows are found
without decrypting anything) and each aggregate row is encrypted with its
identity (tenant key, meter, hour) bound as associated data, so a row cannot
be moved to another tenant or hour unnoticed. Without one, the ledger says so
(``at_rest: plaintext`` in /status, a metric, a log line) instead of
pretending.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from meshd.kms import DataKeyring

PLAINTEXT = "plaintext"
KEYRING = "keyring"


class AtRest(Protocol):
    mode: str

    def tenant_key(self, tenant: str) -> str:
        """The ledger's lookup key for ``tenant``."""
        ...

    def seal(self, payload: bytes, context: Mapping[str, str]) -> str:
        ...

    def open(self, data: str, context: Mapping[str, str]) -> bytes:
        ...


class Plaintext:
    """No keyring: rows are readable JSON, tenant ids are stored as they are."""

    mode = PLAINTEXT

    def tenant_key(self, tenant: str) -> str:
        return "t:" + tenant

    def seal(self, payload: bytes, context: Mapping[str, str]) -> str:
        return payload.decode()

    def open(self, data: str, context: Mapping[str, str]) -> bytes:
        return data.encode()


class KeyringProtected:
    """Blind-indexed tenant ids and encrypted rows, through the region's keyring."""

    mode = KEYRING

    def __init__(self, keyring: DataKeyring):
        self.keyring = keyring
        self._keys: dict[str, str] = {}

    def tenant_key(self, tenant: str) -> str:
        key = self._keys.get(tenant)
        if key is None:
            # The blind index must stay stable across key rotations, or rows
            # written before a rotation could no longer be found.
            key = "bi:" + self.keyring.blind_index(b"meshd-metering-tenant\x00" + tenant.encode())
            if len(self._keys) < 100_000:
                self._keys[tenant] = key
        return key

    def seal(self, payload: bytes, context: Mapping[str, str]) -> str:
        return self.keyring.encrypt(payload, context)

    def open(self, data: str, context: Mapping[str, str]) -> bytes:
        return self.keyring.decrypt(data, context)
