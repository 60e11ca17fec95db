"""``keys.kms.settings`` of the ``aws-kms`` provider."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# Set by the keys plugin next to the operator's settings (``region`` is kept: it names the meshd region).
PLACED_BY_MESHD = ("state_dir", "keys_dir")


class AwsKmsSettings(BaseModel):
    """Which KMS key, and where to reach it; credentials come from the standard AWS chain only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(min_length=1)
    """A key ARN, key id, alias name (``alias/meshd-eu-west-1``) or alias ARN."""
    aws_region: str | None = None
    """The AWS region of the key (default: the ARN's region, else the standard chain's)."""
    endpoint_url: str | None = None
    """A VPC or FIPS endpoint of KMS (default: the region's public endpoint)."""
    profile: str | None = None
    """A named profile of the shared AWS config (default: the standard chain)."""
    timeout: float = Field(default=5.0, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=10)
    region: str | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> AwsKmsSettings:
        """The settings; ValueError naming each bad ``keys.kms.settings`` key (never its value)."""
        try:
            return cls(**{k: v for k, v in config.items() if k not in PLACED_BY_MESHD})
        except ValidationError as exc:
            problems = "; ".join(
                f"keys.kms.settings.{'.'.join(str(p) for p in err['loc']) or '(section)'}: {err['msg']}"
                for err in exc.errors(include_input=False, include_url=False))
            raise ValueError(f"aws-kms: {problems}") from None

    def key_region(self) -> str | None:
        """The AWS region to call: explicit, else the one in an ARN (``arn:aws:kms:<region>:...``)."""
        if self.aws_region:
            return self.aws_region
        parts = self.key.split(":")
        return parts[3] if self.key.startswith("arn:") and len(parts) > 4 and parts[3] else None
