"""Wrap and unwrap data keys with an Azure Key Vault (or Managed HSM) key.

Key Vault's ``wrapKey`` binds no associated data, so the wrap context is
bound locally (:mod:`.envelope`): a one-time AES-256-GCM key seals the data
key with the context as associated data, and Key Vault wraps that one-time
key (RSA-OAEP-256 for RSA keys, A256KW for Managed HSM ``oct`` keys). For RSA
keys the client library wraps locally with the public key it fetched; the
unwrap, with the private key, always happens in Key Vault.

Every wrapped key records the key version that wrapped it. Without a pinned
``key_version`` the provider follows the key's current version (re-read by
every ``check()``), so after a rotation in Key Vault new wraps use the new
version while older wraps still unwrap under theirs.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
from azure.identity import ClientSecretCredential, DefaultAzureCredential
from azure.keyvault.keys import KeyClient, KeyType, KeyVaultKey
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm

from meshd.kms import KMSProvider, KMSUnavailableError, wrap_context

from .envelope import Envelope, seal
from .settings import AzureKeyVaultSettings

T = TypeVar("T")
log = logging.getLogger("meshd.kms.azure")

# azure-core logs bodies at DEBUG when a client enables it, MSAL logs token exchanges at DEBUG: held at INFO
# whatever the daemon's log level. The HTTP logging policy writes two INFO lines per request (every check):
# held at WARNING.
_QUIET_LOGGERS = {"azure": logging.INFO, "msal": logging.INFO,
                  "azure.core.pipeline.policies.http_logging_policy": logging.WARNING}

_ALGORITHM = {KeyType.rsa: KeyWrapAlgorithm.rsa_oaep_256, KeyType.rsa_hsm: KeyWrapAlgorithm.rsa_oaep_256,
              KeyType.oct: KeyWrapAlgorithm.aes_256, KeyType.oct_hsm: KeyWrapAlgorithm.aes_256}

_VERSION = re.compile(r"[0-9A-Za-z]{1,64}")


@dataclass(frozen=True)
class _Version:
    """One version of the key and a client for it."""

    version: str
    algorithm: KeyWrapAlgorithm
    crypto: CryptographyClient


class AzureKeyVaultProvider(KMSProvider):
    """A meshd KMS provider on one Azure Key Vault or Managed HSM key."""

    name = "azure-keyvault"

    def __init__(self, settings: AzureKeyVaultSettings):
        for logger_name, level in _QUIET_LOGGERS.items():
            logger = logging.getLogger(logger_name)
            if logger.level < level:  # NOTSET too: a later debug root level must not reach it
                logger.setLevel(level)
        self.settings = settings
        self._credential = _credential(settings)
        # Few, short retries: check() must report an outage within one check_interval, not after azure-core's
        # default of 10 attempts with growing back-off.
        self._client_options: dict[str, Any] = {
            "retry_total": settings.max_attempts - 1, "retry_backoff_factor": 0.2, "retry_backoff_max": 2,
            "connection_timeout": settings.timeout, "read_timeout": settings.timeout}
        self._keys = KeyClient(settings.vault_url, self._credential, **self._client_options)
        self._lock = threading.Lock()
        self._versions: dict[str, _Version] = {}
        self._current = self._get_key(settings.key_version)

    # ------------------------------------------------------------ KMSProvider

    def wrap(self, plaintext_key: bytes, context: dict[str, str]) -> bytes:
        ctx = wrap_context(context)
        current = self._current
        return seal(plaintext_key, ctx, current.version, current.algorithm.value, lambda cek: self._call(
            lambda: bytes(current.crypto.wrap_key(current.algorithm, cek).encrypted_key), "wrap"))

    def unwrap(self, wrapped_key: bytes, context: dict[str, str]) -> bytes:
        ctx = wrap_context(context)
        envelope = Envelope.parse(wrapped_key)
        version = self._version(envelope.key_version)
        if version.algorithm.value != envelope.algorithm:
            raise ValueError(f"azure-keyvault: version {envelope.key_version} of {self.settings.key_name} does not "
                             f"wrap with {envelope.algorithm}")
        return envelope.open(ctx, lambda wrapped_cek: self._call(
            lambda: bytes(version.crypto.unwrap_key(version.algorithm, wrapped_cek).key), "unwrap"))

    def check(self) -> None:
        """get_key: reachable, credentials valid, the key enabled (and its current version, if not pinned)."""
        self._current = self._get_key(self.settings.key_version)

    def describe(self) -> dict[str, str]:
        # kek_id is the versionless key id: a rotation in Key Vault must not make keyring files look foreign.
        return {"provider": self.name, "kek_id": self.settings.key_id, "key_version": self._current.version,
                "vault": self.settings.vault_host}

    def __repr__(self) -> str:  # the credential stays in the clients; never in a traceback
        return f"AzureKeyVaultProvider(vault_url={self.settings.vault_url!r}, key_name={self.settings.key_name!r})"

    # ------------------------------------------------------------ internals

    def _get_key(self, version: str | None, what: str = "get_key") -> _Version:
        key: KeyVaultKey = self._call(lambda: self._keys.get_key(self.settings.key_name, version), what)
        if key.properties.enabled is False:
            raise KMSUnavailableError(f"azure-keyvault: {key.id} is disabled")
        algorithm = _ALGORITHM.get(KeyType(key.key_type)) if key.key_type else None
        if algorithm is None:
            raise ValueError(f"azure-keyvault: {self.settings.key_id} is a {key.key_type} key: "
                             "it needs an RSA key (or an oct key in a Managed HSM) to wrap keys")
        found = _Version(str(key.properties.version),
                         algorithm, CryptographyClient(key, self._credential, **self._client_options))
        with self._lock:
            self._versions[found.version] = found
        return found

    def _version(self, version: str) -> _Version:
        """The key version a wrap names, looked up in Key Vault on first use."""
        # It goes into a request path: a damaged one must not become another URL.
        if not _VERSION.fullmatch(version):
            raise ValueError("azure-keyvault: a damaged wrapped key (key version)")
        with self._lock:
            known = self._versions.get(version)
        return known if known is not None else self._get_key(version, "get_version")

    def _call(self, request: Callable[[], T], what: str) -> T:
        try:
            return request()
        except ResourceNotFoundError as exc:
            if what == "get_version":  # a version this key never had: the wrap is another key's
                raise ValueError(f"azure-keyvault: {self.settings.key_name} has no such version: "
                                 "not wrapped by this key") from None
            raise KMSUnavailableError(f"azure-keyvault: {what} {self.settings.key_id}: {_reason(exc)}") from None
        except HttpResponseError as exc:
            # Key Vault answered 400 to an unwrap: these bytes are not a wrap of this key version.
            if what == "unwrap" and exc.status_code == 400:
                raise ValueError(f"azure-keyvault: {self.settings.key_name} does not unwrap it: "
                                 f"{_reason(exc)}") from None
            raise KMSUnavailableError(f"azure-keyvault: {what} {self.settings.key_id}: {_reason(exc)}") from None
        except (AzureError, OSError) as exc:  # unreachable, timeouts, no credential or token refused
            raise KMSUnavailableError(f"azure-keyvault: {what} {self.settings.key_id}: {_reason(exc)}") from None


def _credential(settings: AzureKeyVaultSettings) -> TokenCredential:
    if settings.client_secret_file is not None:
        assert settings.tenant_id and settings.client_id  # checked by the settings
        return ClientSecretCredential(settings.tenant_id, settings.client_id, settings.client_secret(),
                                      **({"authority": settings.authority} if settings.authority else {}))
    options: dict[str, Any] = {}
    if settings.authority:
        options["authority"] = settings.authority
    if settings.client_id:
        options["managed_identity_client_id"] = settings.client_id
        options["workload_identity_client_id"] = settings.client_id
    if settings.tenant_id:
        options["workload_identity_tenant_id"] = settings.tenant_id
    return DefaultAzureCredential(**options)


def _reason(exc: Exception) -> str:
    # azure-core's messages carry the status, Key Vault's error code and message and the URL; never a body sent.
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first_line[:200]}"
