"""The two ciphertext encodings and their strict parsers.

Text, for config files, JSON and anything that wants a string::

    meshd:v<N>:<base64 of nonce(12) || AES-GCM ciphertext || tag(16)>

Binary, for records kept as bytes (half the size, no base64 cost)::

    b"MSK1" || N (4 bytes, big-endian) || nonce(12) || ciphertext || tag(16)

``N`` is the key version, 1 to 2**32-1. Neither prefix is authenticated by
itself, so the version is also bound into the associated data (see
:mod:`.aad`): changing it makes decryption fail, never pick another key.
Parsing is strict: one spelling per value (no leading zeros, canonical
padded base64, no whitespace), so a ciphertext has exactly one text form.
"""

from __future__ import annotations

import binascii

from .errors import CiphertextError

TEXT_PREFIX = "meshd:v"
MAGIC = b"MSK1"
HEADER_SIZE = 8
NONCE_SIZE = 12
TAG_SIZE = 16
MIN_PAYLOAD = NONCE_SIZE + TAG_SIZE
MIN_BLOB = HEADER_SIZE + MIN_PAYLOAD
MAX_VERSION = 2**32 - 1

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def text_prefix(version: int) -> str:
    return f"{TEXT_PREFIX}{version}:"


def blob_header(version: int) -> bytes:
    return MAGIC + version.to_bytes(4, "big")


def looks_like_text(value: object) -> bool:
    """Cheap check used to tell our values from others (``meshd_decrypt_secret`` is firstresult)."""
    return isinstance(value, str) and value.startswith(TEXT_PREFIX)


def parse_text(text: object) -> tuple[int, bytes]:
    """``(version, nonce || ciphertext || tag)`` of a text ciphertext; :class:`CiphertextError` otherwise."""
    if not isinstance(text, str) or not text.startswith(TEXT_PREFIX):
        raise CiphertextError("not_ciphertext")
    colon = text.find(":", len(TEXT_PREFIX))
    if colon < 0:
        raise CiphertextError("not_ciphertext")
    digits = text[len(TEXT_PREFIX):colon]
    if not (digits.isascii() and digits.isdigit()) or digits[0] == "0" or len(digits) > 10:
        raise CiphertextError("bad_version", version=digits[:12])
    version = int(digits)
    if version > MAX_VERSION:
        raise CiphertextError("bad_version", version=digits)
    return version, parse_payload(text[colon + 1:])


# A padded payload's last data character carries unused low bits (2 before
# one "=", 4 before "=="): they must be zero, or two spellings would decode
# to the same bytes. The characters whose index has those bits clear:
_ENDS_BEFORE_ONE_PAD = frozenset(c for i, c in enumerate(_B64) if not i & 0b11)
_ENDS_BEFORE_TWO_PADS = frozenset(c for i, c in enumerate(_B64) if not i & 0b1111)


def parse_payload(payload: str) -> bytes:
    """``nonce || ciphertext || tag`` from the base64 after a text ciphertext's prefix; strict as :func:`parse_text`.

    ``strict_mode`` already refuses characters outside the standard alphabet
    (whitespace too), padding inside the data and data that stops short of a
    quantum, but not "=" in excess after it; so the length is compared with
    the canonical one, and the unused bits of a padded end are looked up:
    the decryption hot path's whole validation.
    """
    try:
        raw = binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError):  # ValueError: a character outside ASCII
        raise CiphertextError("not_base64") from None
    if len(payload) != (len(raw) + 2) // 3 * 4:
        raise CiphertextError("not_base64")
    if payload[-1:] == "=":
        if payload[-2] == "=":
            if payload[-3] not in _ENDS_BEFORE_TWO_PADS:
                raise CiphertextError("not_base64")
        elif payload[-2] not in _ENDS_BEFORE_ONE_PAD:
            raise CiphertextError("not_base64")
    if len(raw) < MIN_PAYLOAD:
        if not payload:
            raise CiphertextError("not_base64")
        raise CiphertextError("truncated", size=len(raw), minimum=MIN_PAYLOAD)
    return raw


# A prefix "meshd:vN:" ends at most this far in: 7 characters, then up to 10 digits.
PREFIX_END = len(TEXT_PREFIX) + 11


def format_text(version: int, payload: bytes) -> str:
    return text_prefix(version) + binascii.b2a_base64(payload, newline=False).decode("ascii")


def parse_blob(blob: bytes) -> int:
    """The version of a binary ciphertext; :class:`CiphertextError` if its header or size is wrong."""
    if len(blob) < HEADER_SIZE or blob[:4] != MAGIC:
        raise CiphertextError("bad_header")
    version = int.from_bytes(blob[4:8], "big")
    if version == 0:
        raise CiphertextError("bad_version", version="0")
    if len(blob) < MIN_BLOB:
        raise CiphertextError("truncated", size=len(blob) - HEADER_SIZE, minimum=MIN_PAYLOAD)
    return version


def text_to_blob(text: str) -> bytes:
    version, raw = parse_text(text)
    return blob_header(version) + raw


def blob_to_text(blob: bytes) -> str:
    version = parse_blob(blob)
    return format_text(version, bytes(blob[HEADER_SIZE:]))
