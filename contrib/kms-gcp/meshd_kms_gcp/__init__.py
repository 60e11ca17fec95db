"""The ``gcp-kms`` KMS provider for meshd: Google Cloud KMS."""

from __future__ import annotations

import importlib
from typing import Any

from meshd import KMSProvider, hookimpl

NAME = "gcp-kms"

__all__ = ["NAME", "GcpKmsPlugin", "GcpKmsProvider", "GcpKmsSettings"]

# The client library is imported when the provider is asked for, not when meshd loads its plugins:
# every daemon and CLI run loads every installed plugin, most of them without using this provider.
_LAZY = {"GcpKmsProvider": ".provider", "GcpKmsSettings": ".settings"}


def __getattr__(attr: str) -> Any:
    if attr in _LAZY:
        return getattr(importlib.import_module(_LAZY[attr], __name__), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


class GcpKmsPlugin:
    """Offers ``keys.kms.provider: gcp-kms`` through ``meshd_kms_provider``."""

    @hookimpl
    def meshd_kms_provider(self, name: str, config: dict[str, Any]) -> KMSProvider | None:
        if name != NAME:
            return None
        from .provider import GcpKmsProvider
        from .settings import GcpKmsSettings

        return GcpKmsProvider(GcpKmsSettings.from_config(config))
