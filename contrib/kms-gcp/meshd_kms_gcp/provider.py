"""Wrap and unwrap data keys with Cloud KMS ``Encrypt`` / ``Decrypt`` on one symmetric key.

The wrap context is bound as Cloud KMS ``additional_authenticated_data``:
the canonical bytes of :func:`meshd.kms.context_bytes`, so Cloud KMS itself
refuses to decrypt a wrapped key for another region, purpose or keyring.
The wrapped form is Cloud KMS's own ciphertext, which names the key version
that made it: after a rotation new wraps use the new primary version and
old ones keep decrypting while their version is enabled.

Every request and answer carries the CRC32C checksums Google documents for
these calls (``plaintext_crc32c``, ``verified_*``, ``ciphertext_crc32c``),
so a key damaged on the way in either direction is caught, not stored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import google.api_core.exceptions as gexc
import google.auth.aws
import google.auth.exceptions
import google.auth.identity_pool
import google.auth.pluggable
import google_crc32c
from google.api_core.client_options import ClientOptions
from google.api_core.retry import Retry, if_exception_type
from google.cloud import kms
from google.oauth2 import service_account

from meshd.kms import KMSProvider, KMSUnavailableError, context_bytes, wrap_context

from .settings import GcpKmsSettings

T = TypeVar("T")
log = logging.getLogger("meshd.kms.gcp")

# The generated client logs every request and response payload at DEBUG (Encrypt's plaintext, Decrypt's
# answer: data keys), and google-auth and gRPC log around them. Held at INFO whatever the daemon's log level.
_QUIET_LOGGERS = ("google", "grpc")
_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


class GcpKmsProvider(KMSProvider):
    """A meshd KMS provider on one Cloud KMS symmetric key (purpose ENCRYPT_DECRYPT)."""

    name = "gcp-kms"

    def __init__(self, settings: GcpKmsSettings):
        self.settings = settings
        credentials = _load_credentials(settings)
        options = ClientOptions(api_endpoint=settings.endpoint) if settings.endpoint else None
        try:
            self._client = kms.KeyManagementServiceClient(credentials=credentials, client_options=options)
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise KMSUnavailableError(f"gcp-kms: no credentials (set credentials_file, or provide Application "
                                      f"Default Credentials): {_reason(exc)}") from None
        _quiet_sdk_loggers()
        # The client's default retry keeps trying an unreachable endpoint for a minute: bounded here by the
        # configured timeout, so that check() reports an outage within one check_interval.
        self._retry = Retry(predicate=if_exception_type(gexc.ServiceUnavailable, gexc.InternalServerError),
                            initial=0.1, maximum=1.0, multiplier=2.0, timeout=settings.timeout)
        self._primary = self._get_key()

    # ------------------------------------------------------------ KMSProvider

    def wrap(self, plaintext_key: bytes, context: dict[str, str]) -> bytes:
        aad = context_bytes(wrap_context(context))
        answer = self._call(lambda: self._client.encrypt(request={
            "name": self.settings.key_name, "plaintext": plaintext_key, "plaintext_crc32c": _crc(plaintext_key),
            "additional_authenticated_data": aad, "additional_authenticated_data_crc32c": _crc(aad)},
            retry=self._retry, timeout=self.settings.timeout))
        # Not verified: Cloud KMS did not receive what was sent, so the ciphertext may hold other bytes.
        if not (answer.verified_plaintext_crc32c and answer.verified_additional_authenticated_data_crc32c):
            raise KMSUnavailableError(f"gcp-kms: {self.settings.key_name}: Encrypt request damaged in transit")
        ciphertext = bytes(answer.ciphertext)
        if answer.ciphertext_crc32c != _crc(ciphertext):
            raise KMSUnavailableError(f"gcp-kms: {self.settings.key_name}: Encrypt response damaged in transit")
        return ciphertext

    def unwrap(self, wrapped_key: bytes, context: dict[str, str]) -> bytes:
        aad = context_bytes(wrap_context(context))
        if not wrapped_key:
            raise ValueError("gcp-kms: an empty wrapped key")
        answer = self._call(lambda: self._client.decrypt(request={
            "name": self.settings.key_name, "ciphertext": wrapped_key, "ciphertext_crc32c": _crc(wrapped_key),
            "additional_authenticated_data": aad, "additional_authenticated_data_crc32c": _crc(aad)},
            retry=self._retry, timeout=self.settings.timeout))
        plaintext = bytes(answer.plaintext)
        if answer.plaintext_crc32c != _crc(plaintext):
            raise KMSUnavailableError(f"gcp-kms: {self.settings.key_name}: Decrypt response damaged in transit")
        return plaintext

    def check(self) -> None:
        """GetCryptoKey: reachable, credentials valid, the key there with an enabled primary version."""
        self._primary = self._get_key()

    def describe(self) -> dict[str, str]:
        # kek_id is the key, not its primary version: a rotation must not make keyring files look foreign.
        return {"provider": self.name, "kek_id": self.settings.key_name, "location": self.settings.location,
                "primary_version": self._primary}

    def __repr__(self) -> str:  # the credentials stay in the client; never in a traceback
        return f"GcpKmsProvider(key_name={self.settings.key_name!r})"

    # ------------------------------------------------------------ internals

    def _get_key(self) -> str:
        key = self._call(lambda: self._client.get_crypto_key(
            request={"name": self.settings.key_name}, retry=self._retry, timeout=self.settings.timeout))
        if key.purpose != kms.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT:
            raise ValueError(f"gcp-kms: {self.settings.key_name} is a {key.purpose.name} key, "
                             "not a symmetric ENCRYPT_DECRYPT key")
        primary = key.primary
        if not primary.name or primary.state != kms.CryptoKeyVersion.CryptoKeyVersionState.ENABLED:
            raise KMSUnavailableError(f"gcp-kms: {self.settings.key_name} has no enabled primary version")
        return str(primary.name).rsplit("/", 1)[-1]

    def _call(self, request: Callable[[], T]) -> T:
        try:
            return request()
        except gexc.InvalidArgument as exc:  # Cloud KMS answered: not this ciphertext, context or key
            raise ValueError(f"gcp-kms: {self.settings.key_name} does not unwrap it: {_reason(exc)}") from None
        except (gexc.GoogleAPIError, google.auth.exceptions.GoogleAuthError, OSError) as exc:
            # Unreachable, deadline, permission, unauthenticated, a disabled or destroyed key version, retries spent.
            raise KMSUnavailableError(f"gcp-kms: {self.settings.key_name}: {_reason(exc)}") from None


def _load_credentials(settings: GcpKmsSettings) -> Any:
    """The credentials of ``credentials_file``, or None for the client to find Application Default Credentials.

    Loaded by their declared type, each with its own loader: a service-account key, or a workload identity
    federation configuration (file, URL, AWS or executable sourced), the two kinds a daemon off Google Cloud
    uses. google-auth's generic loader is deprecated for files that are not checked this way.
    """
    path = settings.credentials_file
    if path is None:
        return None
    where = f"gcp-kms: keys.kms.settings.credentials_file: {path}"
    try:
        info = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"{where}: {exc.strerror or type(exc).__name__}") from None
    except ValueError:
        raise ValueError(f"{where}: not a JSON credentials file") from None  # the parser's message may quote it
    kind = info.get("type") if isinstance(info, dict) else None
    try:
        if kind == "service_account":
            return service_account.Credentials.from_service_account_info(info, scopes=_SCOPES)
        if kind == "external_account":
            source = info.get("credential_source") or {}
            if str(source.get("environment_id", "")).startswith("aws"):
                return google.auth.aws.Credentials.from_info(info, scopes=_SCOPES)
            if "executable" in source:
                return google.auth.pluggable.Credentials.from_info(info, scopes=_SCOPES)
            return google.auth.identity_pool.Credentials.from_info(info, scopes=_SCOPES)
    except google.auth.exceptions.MalformedError as exc:  # which fields are missing or wrong, not their values
        raise ValueError(f"{where}: {_reason(exc)}") from None
    except (ValueError, TypeError, KeyError) as exc:  # e.g. a damaged private key: the message could quote it
        raise ValueError(f"{where}: not usable credentials ({type(exc).__name__})") from None
    raise ValueError(f"{where}: type {kind!r} is not supported (service_account or external_account)")


def _quiet_sdk_loggers() -> None:
    manager = logging.Logger.manager
    for name in _QUIET_LOGGERS:
        top = logging.getLogger(name)
        if top.level < logging.INFO:  # NOTSET too: a later debug root level must not reach it
            top.setLevel(logging.INFO)
        # $GOOGLE_SDK_PYTHON_LOGGING_SCOPE sets a DEBUG level on a child logger when the client is made.
        for child_name, child in list(manager.loggerDict.items()):
            if (child_name.startswith(name + ".") and isinstance(child, logging.Logger)
                    and logging.NOTSET < child.level < logging.INFO):
                child.setLevel(logging.INFO)


def _crc(data: bytes) -> int:
    return int(google_crc32c.value(data))


def _reason(exc: Exception) -> str:
    # gRPC status messages name the code, the resource and the endpoint; never a request's payload.
    return f"{type(exc).__name__}: {str(exc)[:200]}"
