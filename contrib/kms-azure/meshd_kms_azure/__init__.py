"""The ``azure-keyvault`` KMS provider for meshd: Azure Key Vault and Managed HSM."""

from __future__ import annotations

from meshd.kms import LazyProviderPlugin, lazy_exports

NAME = "azure-keyvault"

__all__ = ["NAME", "AzureKeyVaultPlugin", "AzureKeyVaultProvider", "AzureKeyVaultSettings"]

__getattr__ = lazy_exports(__name__, {"AzureKeyVaultProvider": ".provider", "AzureKeyVaultSettings": ".settings"})


class AzureKeyVaultPlugin(LazyProviderPlugin):
    """Offers ``keys.kms.provider: azure-keyvault`` through ``meshd_kms_provider``."""

    provider_name = NAME
    provider = f"{__name__}.provider:AzureKeyVaultProvider"
    settings = f"{__name__}.settings:AzureKeyVaultSettings"
