"""The associated data every ciphertext is bound to.

``AAD = "meshd-aad/1" || lp(region) || lp(purpose) || lp(key_id) || version(4)
|| context``, where ``lp(x)`` is a 2-byte length and ``x``, and ``context``
is the caller's ``{key: value}`` sorted by key, each item ``lp(key) ||
len(value) (4 bytes) || value``. Every field is length-prefixed, so no two
different (region, purpose, key id, version, context) tuples give the same
bytes: a ciphertext decrypts only in the keyring, at the version and with
the context it was written with.
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import CiphertextError

_LABEL = b"meshd-aad/1"


def _lp(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise CiphertextError("bad_context", detail="a name longer than 65535 bytes")
    return len(data).to_bytes(2, "big") + data


def aad_prefix(region: str, purpose: str, key_id: str, version: int) -> bytes:
    return _LABEL + _lp(region.encode()) + _lp(purpose.encode()) + _lp(key_id.encode()) + version.to_bytes(4, "big")


def encode_context(context: Mapping[str, str] | None) -> bytes:
    """The canonical bytes of ``context``; :class:`CiphertextError` unless it maps str to str."""
    if not context:
        return b""
    if not isinstance(context, Mapping):
        raise CiphertextError("bad_context", detail=f"a mapping is needed, not {type(context).__name__}")
    try:
        # Sorting the items compares keys first; equal keys cannot occur in a mapping, so values never are.
        items = sorted(context.items())
    except TypeError:
        items = sorted(context.items(), key=lambda kv: kv[0] if isinstance(kv[0], str) else "")
    out = bytearray()
    for key, value in items:
        if not isinstance(key, str) or not isinstance(value, str):
            raise CiphertextError("bad_context", detail=f"key {key!r} must be a string with a string value")
        kb, vb = key.encode("utf-8", "surrogatepass"), value.encode("utf-8", "surrogatepass")
        if len(kb) > 0xFFFF:
            raise CiphertextError("bad_context", detail="a name longer than 65535 bytes")
        out += len(kb).to_bytes(2, "big")
        out += kb
        out += len(vb).to_bytes(4, "big")
        out += vb
    return bytes(out)
