"""Licenses: EdDSA (Ed25519) JWTs signed with the issuing region's key, verifiable offline.

The header's ``kid`` is ``<region>/<key id>``: any holder of the
federation's trust bundle (every region's public key) can verify a license
without asking a daemon, and ``meshd license verify TOKEN --key FILE`` does
it with one public key alone. Claims: ``iss`` (the federation), ``sub`` and
``tenant`` (the tenant id), ``partner``, ``plan``, ``features``, ``region``
(where it was issued), ``iat``, ``exp``, ``jti``.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from meshd.config import TrustBundle
from meshd.identity import key_id, load_public_key

ALGORITHM = "EdDSA"


class LicenseInvalid(Exception):
    """A token that does not verify; the message says why (expired, forged, malformed, unknown key)."""


def issue(private_key: Ed25519PrivateKey, *, federation: str, region: str, tenant: str, partner: str | None,
          plan: str, features: list[str], ttl: float, now: float | None = None) -> tuple[str, int]:
    """A signed license and its expiry (epoch seconds)."""
    issued = int(now if now is not None else time.time())
    expires = issued + int(ttl)
    claims = {"iss": federation, "sub": tenant, "tenant": tenant, "partner": partner, "plan": plan,
              "features": sorted(set(features)), "region": region, "iat": issued, "exp": expires,
              "jti": secrets.token_hex(8)}
    kid = f"{region}/{key_id(private_key.public_key())}"
    token = jwt.encode(claims, private_key, algorithm=ALGORITHM, headers={"kid": kid})
    return token, expires


def read_public_key(path: Path) -> Ed25519PublicKey:
    """A public key file: PEM (SubjectPublicKeyInfo) or the base64 raw key of a trust bundle entry."""
    data = path.read_bytes()
    if b"-----BEGIN" in data:
        key = serialization.load_pem_public_key(data)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"{path}: not an Ed25519 public key")
        return key
    return load_public_key(data.decode().strip())


def verify(token: str, *, trust: TrustBundle | None = None, key: Ed25519PublicKey | None = None) -> dict[str, Any]:
    """The claims of a valid license; :class:`LicenseInvalid` otherwise.

    With ``key``, only that key is tried; else the key the header names is
    looked up in ``trust`` and the issuer must be its federation.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise LicenseInvalid(f"malformed token: {exc}") from None
    if header.get("alg") != ALGORITHM:
        raise LicenseInvalid(f"algorithm {header.get('alg')!r} is not {ALGORITHM}")
    issuer = None
    if key is None:
        if trust is None:
            raise LicenseInvalid("no key to verify with")
        region, _, kid = str(header.get("kid", "")).partition("/")
        entry = trust.keys.get(region)
        if entry is None or entry.key_id != kid:
            raise LicenseInvalid(f"signed by key {header.get('kid')!r}, which the trust bundle does not hold")
        key = load_public_key(entry.public_key)
        issuer = trust.federation
    options = {"require": ["exp", "iat", "iss", "sub"]}
    try:
        claims: dict[str, Any] = jwt.decode(token, key, algorithms=[ALGORITHM], issuer=issuer,
                                            options=options)  # type: ignore[arg-type]
    except jwt.ExpiredSignatureError:
        raise LicenseInvalid("expired") from None
    except jwt.InvalidSignatureError:
        raise LicenseInvalid("the signature does not verify (forged or altered)") from None
    except jwt.PyJWTError as exc:
        raise LicenseInvalid(str(exc)) from None
    return claims
