"""``keys.kms.settings`` of the ``gcp-kms`` provider."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator

from meshd.kms import ProviderSettings

_KEY_NAME = re.compile(r"projects/([^/]+)/locations/([^/]+)/keyRings/([^/]+)/cryptoKeys/([^/]+)")


class GcpKmsSettings(ProviderSettings):
    """Which Cloud KMS key, and how to reach it; credentials are a file or Application Default Credentials."""

    provider_name = "gcp-kms"

    key_name: str
    """``projects/P/locations/L/keyRings/R/cryptoKeys/K``: a key, not one of its versions."""
    credentials_file: Path | None = None
    """A service-account or workload-identity-federation JSON file (default: Application Default Credentials)."""
    endpoint: str | None = None
    """Another API endpoint, e.g. a Private Service Connect one (default: ``cloudkms.googleapis.com``)."""
    timeout: float = Field(default=5.0, gt=0)
    """Seconds for one request, retries included."""
    region: str | None = None

    @field_validator("key_name")
    @classmethod
    def _key_name(cls, value: str) -> str:
        # A key version would pin every wrap to it and defeat Cloud KMS rotation: Decrypt finds the version itself.
        if not _KEY_NAME.fullmatch(value):
            raise ValueError("must be projects/<project>/locations/<location>/keyRings/<ring>/cryptoKeys/<key>")
        return value

    @field_validator("credentials_file")
    @classmethod
    def _credentials_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a file")
        return value

    @property
    def location(self) -> str:
        """The Cloud KMS location of the key (``europe-west1``, ``global``...)."""
        match = _KEY_NAME.fullmatch(self.key_name)
        assert match is not None  # checked by _key_name
        return match.group(2)
