"""``keys.kms.settings`` of the ``kmip`` provider."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from meshd.kms import ProviderSettings

# What ``kmip_version`` accepts, as PyKMIP's KMIPVersion names them (Encrypt/Decrypt need 1.2 or later).
KMIP_VERSIONS = ("1.2", "1.3", "1.4", "2.0")


class KmipSettings(ProviderSettings):
    """Which KMIP server and key, and the client certificate (mutual TLS) to reach it with."""

    provider_name = "kmip"

    host: str = Field(min_length=1)
    """The KMIP server's name or address; its certificate must name it (checked by the provider)."""
    port: int = Field(default=5696, ge=1, le=65535)
    key_id: str = Field(min_length=1)
    """The Unique Identifier of an AES-256 symmetric key on the server, Active, usable to encrypt and decrypt."""
    cert_file: Path
    """The client certificate (PEM) the server knows this region by."""
    key_file: Path
    """Its private key (PEM, unencrypted, mode 0600: readable by the daemon's user only)."""
    ca_file: Path
    """The CA certificate(s) (PEM) the server's certificate must chain to."""
    username: str | None = None
    """For servers that also want a KMIP Username/Password credential in every request."""
    password_file: Path | None = None
    """The password of ``username``, in a file (never in the config itself)."""
    kmip_version: str = "1.2"
    timeout: float = Field(default=5.0, gt=0)
    """Seconds to connect and to wait for each answer."""
    region: str | None = None

    @field_validator("cert_file", "key_file", "ca_file", "password_file")
    @classmethod
    def _readable_file(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"{path} is not a file")
        return path

    @field_validator("kmip_version")
    @classmethod
    def _known_version(cls, version: str) -> str:
        if version not in KMIP_VERSIONS:
            raise ValueError(f"not a KMIP version this provider speaks (one of {', '.join(KMIP_VERSIONS)})")
        return version

    @model_validator(mode="after")
    def _credential_pair(self) -> KmipSettings:
        if (self.username is None) != (self.password_file is None):
            raise ValueError("username and password_file go together")
        return self

    def resolved_password(self) -> str | None:
        """The password of ``password_file`` (its first line), or None without one."""
        if self.password_file is None:
            return None
        try:
            return self.password_file.read_text().strip()
        except OSError as exc:
            raise ValueError(f"kmip: keys.kms.settings.password_file: {self.password_file}: "
                             f"{exc.strerror or exc}") from None
