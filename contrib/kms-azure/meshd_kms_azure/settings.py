"""``keys.kms.settings`` of the ``azure-keyvault`` provider."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator

from meshd.kms import ProviderSettings

# Key Vault object names: 1-127 letters, digits and dashes; versions are 32 hex digits.
_KEY_NAME = re.compile(r"[0-9A-Za-z-]{1,127}")
_KEY_VERSION = re.compile(r"[0-9A-Fa-f]{32}")


class AzureKeyVaultSettings(ProviderSettings):
    """Which Key Vault key, and how to authenticate (DefaultAzureCredential, or a client secret in a file)."""

    provider_name = "azure-keyvault"

    vault_url: str
    """``https://<vault>.vault.azure.net`` or ``https://<hsm>.managedhsm.azure.net``."""
    key_name: str
    key_version: str | None = None
    """Pin new wraps to one version (default: the key's current version, re-read at every check)."""
    tenant_id: str | None = None
    client_id: str | None = None
    """With ``client_secret_file``: a service principal; alone: a user-assigned managed identity."""
    client_secret_file: Path | None = None
    """A file holding the service principal's secret (e.g. a systemd credential); never the secret itself."""
    authority: str | None = None
    """The Entra ID login host of a national cloud, e.g. ``login.microsoftonline.us`` (default: public cloud)."""
    timeout: float = Field(default=5.0, gt=0)
    """Seconds to connect, and to wait for an answer, per attempt."""
    max_attempts: int = Field(default=3, ge=1, le=10)
    region: str | None = None

    @field_validator("vault_url")
    @classmethod
    def _vault_url(cls, value: str) -> str:
        # The client sends a bearer token to this URL: plain http is never right, and a path is a typo.
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname or parts.path.strip("/") or parts.query:
            raise ValueError("must be https://<vault>.vault.azure.net (or a Managed HSM URL), without a path")
        return value.rstrip("/")

    @field_validator("key_name")
    @classmethod
    def _key_name(cls, value: str) -> str:
        if not _KEY_NAME.fullmatch(value):
            raise ValueError("must be a Key Vault key name (letters, digits and dashes), not a URL")
        return value

    @field_validator("key_version")
    @classmethod
    def _key_version(cls, value: str | None) -> str | None:
        if value is not None and not _KEY_VERSION.fullmatch(value):
            raise ValueError("must be a key version (32 hex digits)")
        return value

    @field_validator("client_secret_file")
    @classmethod
    def _client_secret_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # A field validator (not a model one), so that the error names this key.
        if value is not None:
            if not (info.data.get("tenant_id") and info.data.get("client_id")):
                raise ValueError("needs tenant_id and client_id too")
            if not value.is_file():
                raise ValueError(f"{value} is not a file")
        return value

    @property
    def vault_host(self) -> str:
        return urlsplit(self.vault_url).hostname or ""

    @property
    def key_id(self) -> str:
        """The key's versionless id: what keyring files record, unchanged by a rotation."""
        return f"{self.vault_url}/keys/{self.key_name}"

    def client_secret(self) -> str:
        """The service principal's secret, read from ``client_secret_file``."""
        assert self.client_secret_file is not None
        try:
            secret = self.client_secret_file.read_text().strip()
        except OSError as exc:
            raise ValueError(f"azure-keyvault: keys.kms.settings.client_secret_file: {self.client_secret_file}: "
                             f"{exc.strerror or type(exc).__name__}") from None
        if not secret:
            raise ValueError(f"azure-keyvault: keys.kms.settings.client_secret_file: {self.client_secret_file} "
                             "is empty")
        return secret
