"""Wrap and unwrap data keys with Transit ``encrypt`` / ``decrypt`` under a named key.

The wrap context is bound as Transit ``associated_data`` (AES-GCM keys,
Transit's default ``aes256-gcm96``): the canonical bytes of
:func:`meshd.kms.context_bytes`, so a wrapped key moved to another region,
purpose or keyring fails to decrypt in Vault itself. The wrapped form is
Transit's own ciphertext (``vault:vN:...``), whose ``vN`` is the Transit key
version: after ``transit/keys/<key>/rotate`` new wraps use the new version
and old ones still unwrap, until ``min_decryption_version`` retires them.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import hvac
import hvac.exceptions
import requests

from meshd.kms import KMSProvider, KMSUnavailableError, context_bytes, wrap_context

from .settings import TransitSettings

T = TypeVar("T")
log = logging.getLogger("meshd.kms.vault_transit")

# Vault answered, and the answer is "not this ciphertext/context": a mismatch, never worth retrying.
_MISMATCH = (hvac.exceptions.InvalidRequest,)
# Vault did not answer usefully: an outage (or lost access), worth an alert and a retry.
_OUTAGE = (requests.exceptions.RequestException, hvac.exceptions.VaultDown, hvac.exceptions.InternalServerError,
           hvac.exceptions.BadGateway, hvac.exceptions.RateLimitExceeded, hvac.exceptions.Forbidden,
           hvac.exceptions.Unauthorized, hvac.exceptions.UnexpectedError, hvac.exceptions.InvalidPath)


class VaultTransitProvider(KMSProvider):
    """A meshd KMS provider on a Vault/OpenBao Transit key."""

    name = "vault-transit"

    def __init__(self, settings: TransitSettings):
        self.settings = settings
        self._lock = threading.Lock()  # hvac's session is not safe to log in from two threads at once
        self._client = hvac.Client(url=settings.url, namespace=settings.namespace, timeout=settings.timeout,
                                   verify=str(settings.ca_cert) if settings.ca_cert else True)
        self._login()
        self._latest = self._call(self._read_latest_version)  # fails now, at start, if the key is not there

    # ------------------------------------------------------------ KMSProvider

    def wrap(self, plaintext_key: bytes, context: dict[str, str]) -> bytes:
        ad = _b64(context_bytes(wrap_context(context)))
        answer = self._call(lambda: self._client.secrets.transit.encrypt_data(
            name=self.settings.key, plaintext=_b64(plaintext_key), associated_data=ad,
            mount_point=self.settings.mount))
        return str(answer["data"]["ciphertext"]).encode("ascii")

    def unwrap(self, wrapped_key: bytes, context: dict[str, str]) -> bytes:
        ad = _b64(context_bytes(wrap_context(context)))
        try:
            ciphertext = wrapped_key.decode("ascii")
        except UnicodeDecodeError:
            ciphertext = ""
        if not ciphertext.startswith("vault:v"):
            raise ValueError("not a key wrapped by Vault/OpenBao Transit")
        answer = self._call(lambda: self._client.secrets.transit.decrypt_data(
            name=self.settings.key, ciphertext=ciphertext, associated_data=ad, mount_point=self.settings.mount))
        return base64.b64decode(answer["data"]["plaintext"])

    def check(self) -> None:
        """Read the Transit key's metadata (and notice a rotation of it)."""
        self._latest = self._call(self._read_latest_version)

    def describe(self) -> dict[str, str]:
        kek_id = f"{self.settings.mount}/{self.settings.key}"
        if self.settings.namespace:
            kek_id = f"{self.settings.namespace}/{kek_id}"
        return {"provider": self.name, "kek_id": kek_id, "url": self.settings.url,
                "key_version": str(self._latest)}

    def __repr__(self) -> str:  # the token stays in the client; never in a traceback
        return f"VaultTransitProvider(url={self.settings.url!r}, key={self.settings.key!r})"

    # ------------------------------------------------------------ internals

    def _login(self) -> None:
        s = self.settings
        try:
            if s.auth == "approle":
                self._client.auth.approle.login(role_id=s.role_id, secret_id=s.resolved_secret_id(),
                                                mount_point=s.approle_mount)
            else:
                self._client.token = s.resolved_token()
        except _OUTAGE as exc:
            raise KMSUnavailableError(f"vault-transit: login to {s.url} failed: {_reason(exc)}") from None

    def _read_latest_version(self) -> int:
        data = self._client.secrets.transit.read_key(name=self.settings.key, mount_point=self.settings.mount)
        return int(data["data"]["latest_version"])

    def _call(self, request: Callable[[], T]) -> T:
        """One Transit request; an expired AppRole token is renewed by logging in again, once."""
        for attempt in (1, 2):
            try:
                return request()
            except _MISMATCH as exc:
                raise ValueError(f"vault-transit: {self.settings.key} does not unwrap it: {_reason(exc)}") from None
            except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized) as exc:
                if attempt == 1 and self.settings.auth == "approle":
                    with self._lock:
                        self._login()
                    continue
                raise KMSUnavailableError(f"vault-transit: {self.settings.url} refused: {_reason(exc)}") from None
            except _OUTAGE as exc:
                raise KMSUnavailableError(f"vault-transit: {self.settings.url}: {_reason(exc)}") from None
        raise AssertionError("unreachable")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _reason(exc: Exception) -> Any:
    # hvac puts the server's errors and the URL in str(exc); the request body (keys, token) is never in it.
    return f"{type(exc).__name__}: {str(exc)[:200]}"
