"""The ``gcp-kms`` KMS provider for meshd: Google Cloud KMS."""

from __future__ import annotations

from meshd.kms import LazyProviderPlugin, lazy_exports

NAME = "gcp-kms"

__all__ = ["NAME", "GcpKmsPlugin", "GcpKmsProvider", "GcpKmsSettings"]

__getattr__ = lazy_exports(__name__, {"GcpKmsProvider": ".provider", "GcpKmsSettings": ".settings"})


class GcpKmsPlugin(LazyProviderPlugin):
    """Offers ``keys.kms.provider: gcp-kms`` through ``meshd_kms_provider``."""

    provider_name = NAME
    provider = f"{__name__}.provider:GcpKmsProvider"
    settings = f"{__name__}.settings:GcpKmsSettings"
