"""The local half of an ``azure-keyvault`` wrap: binding the wrap context, which Key Vault cannot do.

Key Vault's ``wrapKey`` / ``unwrapKey`` take no associated data, so a key it
wrapped would unwrap in any context. Instead, each data key is sealed here
with AES-256-GCM under a fresh one-time key (CEK), with the wrap context as
associated data, and only the CEK goes to Key Vault to be wrapped::

    wrapped = header ‖ nonce (12) ‖ AES-256-GCM(CEK, nonce, data key, AAD) ‖ tag (16)
    header  = "MKV1" ‖ lp1(key version) ‖ lp1(algorithm) ‖ lp2(wrapped CEK)
    AAD     = header ‖ meshd.kms.context_bytes(context)
    lpN(x)  = len(x) (N bytes, big-endian) ‖ x

The header records which Key Vault key version and algorithm wrapped the
CEK, so a wrap made before a rotation still unwraps after it. It is part of
the AAD: relabelling a wrap with another version or algorithm fails here,
not only in Key Vault. The CEK is used once and dropped, so a random nonce
never repeats under it.

Pure functions over two callables (``wrap_cek``, ``unwrap_cek``) that reach
Key Vault in the provider, so that this layer is tested on its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from meshd.kms import context_bytes, wrap_context

MAGIC = b"MKV1"
ALGORITHMS = ("RSA-OAEP-256", "A256KW")
"""Key Vault wrap algorithms this format accepts: RSA keys, and Managed HSM ``oct`` keys."""
_NONCE = 12
_TAG = 16
_CEK = 32


@dataclass(frozen=True)
class Envelope:
    """A parsed wrapped key: which Key Vault key version and algorithm wrapped its CEK."""

    key_version: str
    algorithm: str
    wrapped_cek: bytes
    nonce: bytes
    sealed: bytes
    header: bytes

    @classmethod
    def parse(cls, blob: bytes) -> Envelope:
        """The envelope of ``blob``; ValueError if it is not one (truncated, other format, unknown algorithm)."""
        if not blob.startswith(MAGIC):
            raise ValueError("azure-keyvault: not a key wrapped by this provider")
        reader = _Reader(blob, len(MAGIC))
        version = reader.field(1).decode("ascii", "replace")
        algorithm = reader.field(1).decode("ascii", "replace")
        wrapped_cek = reader.field(2)
        header = blob[:reader.pos]
        nonce = reader.take(_NONCE)
        sealed = blob[reader.pos:]
        if algorithm not in ALGORITHMS:
            raise ValueError(f"azure-keyvault: unknown wrap algorithm {algorithm!r}")
        if not version or not wrapped_cek or len(sealed) < _TAG + 1:
            raise ValueError("azure-keyvault: a damaged wrapped key")
        return cls(version, algorithm, wrapped_cek, nonce, sealed, header)

    def open(self, context: Mapping[str, str], unwrap_cek: Callable[[bytes], bytes]) -> bytes:
        """The data key, if ``context`` is the one it was sealed in; ValueError otherwise or if damaged."""
        aad = self.header + context_bytes(wrap_context(context))
        cek = unwrap_cek(self.wrapped_cek)
        if len(cek) != _CEK:
            raise ValueError("azure-keyvault: the unwrapped one-time key has the wrong length")
        try:
            return AESGCM(cek).decrypt(self.nonce, self.sealed, aad)
        except InvalidTag:
            raise ValueError("azure-keyvault: the wrapped key does not open in this context, or is damaged") from None


def seal(plaintext_key: bytes, context: Mapping[str, str], key_version: str, algorithm: str,
         wrap_cek: Callable[[bytes], bytes]) -> bytes:
    """Seal ``plaintext_key`` bound to ``context`` under a one-time key that ``wrap_cek`` wraps in Key Vault."""
    ctx = context_bytes(wrap_context(context))
    if algorithm not in ALGORITHMS:
        raise ValueError(f"azure-keyvault: unknown wrap algorithm {algorithm!r}")
    cek = AESGCM.generate_key(bit_length=256)
    header = MAGIC + _lp(key_version.encode("ascii"), 1) + _lp(algorithm.encode("ascii"), 1) + _lp(wrap_cek(cek), 2)
    nonce = os.urandom(_NONCE)
    return header + nonce + AESGCM(cek).encrypt(nonce, plaintext_key, header + ctx)


def _lp(data: bytes, size: int) -> bytes:
    if len(data) >= 1 << (8 * size):
        raise ValueError("azure-keyvault: a header field is too long")
    return len(data).to_bytes(size, "big") + data


class _Reader:
    def __init__(self, blob: bytes, pos: int):
        self.blob, self.pos = blob, pos

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.blob):
            raise ValueError("azure-keyvault: a truncated wrapped key")
        out = self.blob[self.pos:self.pos + n]
        self.pos += n
        return out

    def field(self, size: int) -> bytes:
        return self.take(int.from_bytes(self.take(size), "big"))
