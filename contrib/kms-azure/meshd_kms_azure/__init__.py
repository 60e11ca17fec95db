"""The ``azure-keyvault`` KMS provider for meshd: Azure Key Vault and Managed HSM."""

from __future__ import annotations

import importlib
from typing import Any

from meshd import KMSProvider, hookimpl

NAME = "azure-keyvault"

__all__ = ["NAME", "AzureKeyVaultPlugin", "AzureKeyVaultProvider", "AzureKeyVaultSettings"]

# The client library is imported when the provider is asked for, not when meshd loads its plugins:
# every daemon and CLI run loads every installed plugin, most of them without using this provider.
_LAZY = {"AzureKeyVaultProvider": ".provider", "AzureKeyVaultSettings": ".settings"}


def __getattr__(attr: str) -> Any:
    if attr in _LAZY:
        return getattr(importlib.import_module(_LAZY[attr], __name__), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


class AzureKeyVaultPlugin:
    """Offers ``keys.kms.provider: azure-keyvault`` through ``meshd_kms_provider``."""

    @hookimpl
    def meshd_kms_provider(self, name: str, config: dict[str, Any]) -> KMSProvider | None:
        if name != NAME:
            return None
        from .provider import AzureKeyVaultProvider
        from .settings import AzureKeyVaultSettings

        return AzureKeyVaultProvider(AzureKeyVaultSettings.from_config(config))
