"""The ``vault-transit`` KMS provider for meshd: HashiCorp Vault or OpenBao Transit."""

from __future__ import annotations

from typing import Any

from meshd import KMSProvider, hookimpl

from .provider import VaultTransitProvider
from .settings import TransitSettings

NAME = "vault-transit"

__all__ = ["NAME", "TransitSettings", "VaultTransitPlugin", "VaultTransitProvider"]


class VaultTransitPlugin:
    """Offers ``keys.kms.provider: vault-transit`` through ``meshd_kms_provider``."""

    @hookimpl
    def meshd_kms_provider(self, name: str, config: dict[str, Any]) -> KMSProvider | None:
        if name != NAME:
            return None
        return VaultTransitProvider(TransitSettings.from_config(config))
