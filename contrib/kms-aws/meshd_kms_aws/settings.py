"""``keys.kms.settings`` of the ``aws-kms`` provider."""

from __future__ import annotations

from pydantic import Field

from meshd.kms import ProviderSettings


class AwsKmsSettings(ProviderSettings):
    """Which KMS key, and where to reach it; credentials come from the standard AWS chain only."""

    provider_name = "aws-kms"

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

    def key_region(self) -> str | None:
        """The AWS region to call: explicit, else the one in an ARN (``arn:aws:kms:<region>:...``)."""
        if self.aws_region:
            return self.aws_region
        parts = self.key.split(":")
        return parts[3] if self.key.startswith("arn:") and len(parts) > 4 and parts[3] else None
