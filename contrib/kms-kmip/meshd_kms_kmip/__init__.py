"""The ``kmip`` KMS provider for meshd: a key-encryption key on a KMIP server."""

from __future__ import annotations

from meshd.kms import LazyProviderPlugin, lazy_exports

NAME = "kmip"

__all__ = ["NAME", "KmipPlugin", "KmipProvider", "KmipSettings"]

__getattr__ = lazy_exports(__name__, {"KmipProvider": ".provider", "KmipSettings": ".settings"})


class KmipPlugin(LazyProviderPlugin):
    """Offers ``keys.kms.provider: kmip`` through ``meshd_kms_provider``."""

    provider_name = NAME
    provider = f"{__name__}.provider:KmipProvider"
    settings = f"{__name__}.settings:KmipSettings"
