"""``keys.kms.settings`` of the ``gcp-kms`` provider."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# Set by the keys plugin next to the operator's settings (``region`` is kept: it names the meshd region).
PLACED_BY_MESHD = ("state_dir", "keys_dir")

_KEY_NAME = re.compile(r"projects/([^/]+)/locations/([^/]+)/keyRings/([^/]+)/cryptoKeys/([^/]+)")


class GcpKmsSettings(BaseModel):
    """Which Cloud KMS key, and how to reach it; credentials are a file or Application Default Credentials."""

    model_config = ConfigDict(extra="forbid", frozen=True)

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

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> GcpKmsSettings:
        """The settings; ValueError naming each bad ``keys.kms.settings`` key (never its value)."""
        try:
            return cls(**{k: v for k, v in config.items() if k not in PLACED_BY_MESHD})
        except ValidationError as exc:
            problems = "; ".join(
                f"keys.kms.settings.{'.'.join(str(p) for p in err['loc']) or '(section)'}: {err['msg']}"
                for err in exc.errors(include_input=False, include_url=False))
            raise ValueError(f"gcp-kms: {problems}") from None

    @property
    def location(self) -> str:
        """The Cloud KMS location of the key (``europe-west1``, ``global``...)."""
        match = _KEY_NAME.fullmatch(self.key_name)
        assert match is not None  # checked by _key_name
        return match.group(2)
