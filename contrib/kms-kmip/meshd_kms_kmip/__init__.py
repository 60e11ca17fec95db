"""The ``kmip`` KMS provider for meshd: a key-encryption key on a KMIP server."""

from __future__ import annotations

import importlib
from typing import Any

from meshd import KMSProvider, hookimpl

NAME = "kmip"

__all__ = ["NAME", "KmipPlugin", "KmipProvider", "KmipSettings"]

# PyKMIP is imported when the provider is asked for, not when meshd loads its plugins:
# every daemon and CLI run loads every installed plugin, most of them without using this provider.
_LAZY = {"KmipProvider": ".provider", "KmipSettings": ".settings"}


def __getattr__(attr: str) -> Any:
    if attr in _LAZY:
        return getattr(importlib.import_module(_LAZY[attr], __name__), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


class KmipPlugin:
    """Offers ``keys.kms.provider: kmip`` through ``meshd_kms_provider``."""

    @hookimpl
    def meshd_kms_provider(self, name: str, config: dict[str, Any]) -> KMSProvider | None:
        if name != NAME:
            return None
        from .provider import KmipProvider
        from .settings import KmipSettings

        return KmipProvider(KmipSettings.from_config(config))
