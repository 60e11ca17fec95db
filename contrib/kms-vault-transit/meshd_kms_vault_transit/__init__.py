"""The ``vault-transit`` KMS provider for meshd: HashiCorp Vault or OpenBao Transit."""

from __future__ import annotations

from meshd.kms import LazyProviderPlugin, lazy_exports

NAME = "vault-transit"

__all__ = ["NAME", "VaultTransitPlugin", "VaultTransitProvider", "TransitSettings"]

__getattr__ = lazy_exports(__name__, {"VaultTransitProvider": ".provider", "TransitSettings": ".settings"})


class VaultTransitPlugin(LazyProviderPlugin):
    """Offers ``keys.kms.provider: vault-transit`` through ``meshd_kms_provider``."""

    provider_name = NAME
    provider = f"{__name__}.provider:VaultTransitProvider"
    settings = f"{__name__}.settings:TransitSettings"
