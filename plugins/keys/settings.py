"""The ``keys:`` section of a region's config."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from meshd import Duration, StrictModel
from meshd.config import RelPath

PURPOSE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
SECRETS_PURPOSE = "secrets"
"""The keyring that protects ``!encrypted`` config values; never handed to other plugins."""
SECRETS_CONTEXT = {"use": "config-secret"}
HOUR = 3600.0
DAY = 86400.0
DEFAULT_ROTATE_PERIOD = 90 * DAY
MAX_ENCRYPTIONS = 2**31


def _purpose(value: str) -> str:
    if not PURPOSE_RE.match(value):
        raise ValueError(f"{value!r} is not a keyring purpose (lowercase letters, digits, - and _, at most 32)")
    return value


Purpose = Annotated[str, AfterValidator(_purpose)]


def _rotate_period(value: float) -> float:
    if value and value < HOUR:
        raise ValueError("auto_rotate_period must be at least 1h (or 0 to rotate by hand only)")
    return value


def _credential(value: str | None) -> str | None:
    if value is not None and (not value or "/" in value or value in (".", "..")):
        raise ValueError("a systemd credential name is a file name, without /")
    return value


class KMSSettings(StrictModel):
    """Where the key-encryption key comes from."""

    provider: str = "local"
    """``local`` (builtin) or the name of a provider another plugin offers through ``meshd_kms_provider``."""
    kek_file: RelPath | None = None
    """local: the KEK file (default ``<state_dir>/keys/kek``), mode 0600."""
    kek_credential: Annotated[str | None, AfterValidator(_credential)] = None
    """local: a systemd credential name, read from ``$CREDENTIALS_DIRECTORY``; wins over ``kek_file``."""
    create_kek: bool = True
    """local: make a new KEK file when there is none and no keyring exists yet."""
    settings: dict[str, Any] = Field(default_factory=dict)
    """Settings of another provider, passed to it as they are."""
    jurisdiction: Annotated[str | None, Field(pattern=r"^[A-Z]{2}$")] = None
    """Where the KMS endpoint and key are (a jurisdiction code, as in region_map.yaml); one that is
    not the region's is refused at config check: a region's keys stay in its jurisdiction."""


class ServiceSettings(StrictModel):
    """The region-local encrypt/decrypt service on NATS (``meshd-kms.<federation>.<region>.<op>``)."""

    enabled: bool = True
    purposes: list[Purpose] = Field(default_factory=lambda: ["service"])
    """The keyrings the region's services may use; never ``secrets``."""

    def model_post_init(self, _context: Any) -> None:
        if SECRETS_PURPOSE in self.purposes:
            raise ValueError(f"the {SECRETS_PURPOSE!r} keyring protects config secrets; services may not use it")


class KeysConfig(StrictModel):
    """The keys plugin's settings (``keys:`` in the region's config)."""

    kms: KMSSettings = Field(default_factory=KMSSettings)
    migrate_to: KMSSettings | None = None
    """Another KMS to move the keyrings to (``meshd keys migrate-kek --to <its provider>``). While it
    is set, new keyrings are made on it and each keyring opens with whichever of the two wraps it."""
    data_key_ttl: Duration = Field(default=HOUR, ge=0)
    """How long an unwrapped data key is used before the KMS is asked again (0: for the life of the
    process). A KMS that does not answer by then leaves the key in use; one that refuses drops it."""
    purposes: list[Purpose] = Field(default_factory=lambda: [SECRETS_PURPOSE])
    """Keyrings made at start; others are made on first use (``meshd_keyring``)."""
    auto_rotate_period: Annotated[Duration, AfterValidator(_rotate_period)] = DEFAULT_ROTATE_PERIOD
    overdue_grace: Duration = DAY
    """A key is overdue (KeyRotationOverdue) this long after it was due for rotation."""
    max_encryptions_per_version: int = Field(default=MAX_ENCRYPTIONS, ge=1, le=MAX_ENCRYPTIONS)
    count_reserve_block: int = Field(default=2**20, ge=1)
    announce_interval: Duration = Field(default=60.0, ge=0.5)
    check_interval: Duration = Field(default=60.0, ge=0.05)
    service: ServiceSettings = Field(default_factory=ServiceSettings)
