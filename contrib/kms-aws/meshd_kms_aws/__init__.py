"""The ``aws-kms`` KMS provider for meshd."""

from __future__ import annotations

from typing import Any

from meshd import KMSProvider, hookimpl

from .provider import AwsKmsProvider
from .settings import AwsKmsSettings

NAME = "aws-kms"

__all__ = ["NAME", "AwsKmsPlugin", "AwsKmsProvider", "AwsKmsSettings"]


class AwsKmsPlugin:
    """Offers ``keys.kms.provider: aws-kms`` through ``meshd_kms_provider``."""

    @hookimpl
    def meshd_kms_provider(self, name: str, config: dict[str, Any]) -> KMSProvider | None:
        if name != NAME:
            return None
        return AwsKmsProvider(AwsKmsSettings.from_config(config))
