"""Partner API keys: their format, hashing and checking.

A key reads ``mpk_<key_id>_<secret>``: ``key_id`` (12 lowercase base32
characters) names the stored record, ``secret`` (32 URL-safe characters,
192 random bits) is known only to the partner. Only an argon2id hash of the
secret is stored. Checking a secret against argon2id costs milliseconds, so
a daemon remembers, in memory only, a SHA-256 of each secret it has already
verified against the current record; a later request compares against that
in constant time. The memory is dropped whenever the record changes
(revocation included).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from argon2 import PasswordHasher

ROLES = ("admin", "deployer", "read")
KEY_RE = re.compile(r"^mpk_(?P<key_id>[a-z2-7]{12})_(?P<secret>[A-Za-z0-9_-]{32})$")



@cache
def _hasher() -> PasswordHasher:
    # Imported on first use: every meshd process loads this plugin, few of them check keys.
    from argon2 import PasswordHasher

    # Interactive-login parameters are for guessable passwords; a 192-bit secret needs no more than
    # OWASP's minimum for argon2id (19 MiB, 2 passes), which keeps a first check near 20 ms.
    return PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def new_key_id() -> str:
    return base64.b32encode(secrets.token_bytes(10)).decode().lower()[:12]


def new_secret() -> str:
    return secrets.token_urlsafe(24)  # 24 bytes -> exactly 32 URL-safe characters


@dataclass(frozen=True)
class ParsedKey:
    key_id: str
    secret: str

    def __repr__(self) -> str:  # never show the secret, even in a traceback
        return f"ParsedKey(key_id={self.key_id!r})"


def parse_key(text: str) -> ParsedKey | None:
    match = KEY_RE.match(text)
    return ParsedKey(match["key_id"], match["secret"]) if match else None


def format_key(key_id: str, secret: str) -> str:
    return f"mpk_{key_id}_{secret}"


def hash_secret(secret: str) -> str:
    return _hasher().hash(secret)


def verify_secret(stored_hash: str, secret: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

    try:
        return _hasher().verify(stored_hash, secret)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


class VerifiedCache:
    """SHA-256 of secrets already verified, by key id; in memory only, cleared per key on change."""

    def __init__(self) -> None:
        self._digests: dict[str, bytes] = {}

    def matches(self, key_id: str, secret: str) -> bool:
        known = self._digests.get(key_id)
        return known is not None and hmac.compare_digest(known, hashlib.sha256(secret.encode()).digest())

    def remember(self, key_id: str, secret: str) -> None:
        self._digests[key_id] = hashlib.sha256(secret.encode()).digest()

    def forget(self, key_id: str) -> None:
        self._digests.pop(key_id, None)
