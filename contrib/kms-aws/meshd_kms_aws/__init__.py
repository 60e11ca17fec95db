"""The ``aws-kms`` KMS provider for meshd."""

from __future__ import annotations

from meshd.kms import LazyProviderPlugin, lazy_exports

NAME = "aws-kms"

__all__ = ["NAME", "AwsKmsPlugin", "AwsKmsProvider", "AwsKmsSettings"]

__getattr__ = lazy_exports(__name__, {"AwsKmsProvider": ".provider", "AwsKmsSettings": ".settings"})


class AwsKmsPlugin(LazyProviderPlugin):
    """Offers ``keys.kms.provider: aws-kms`` through ``meshd_kms_provider``."""

    provider_name = NAME
    provider = f"{__name__}.provider:AwsKmsProvider"
    settings = f"{__name__}.settings:AwsKmsSettings"
