"""One region's keyrings: where they live, which KEK wraps them, when they rotate.

A :class:`KeyManager` works from a config and a state directory alone, so
the daemon, ``meshd_decrypt_secret`` (before the daemon is up) and CLI
commands on the same host all use it the same way; they coordinate through
the keyring files' locks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from meshd.kms import KMSProvider

from .errors import KEKError, KeyringError
from .kek import LocalKMSProvider
from .keyfile import KeyringFile
from .keyring import FailureCallback, Keyring, Policy, RotationCallback
from .settings import DEFAULT_ROTATE_PERIOD, PURPOSE_RE, KeysConfig

ProviderLookup = Callable[[str, dict[str, Any]], KMSProvider | None]


def keys_dir_of(state_dir: Path) -> Path:
    return Path(state_dir) / "keys"


def provider_settings(cfg: KeysConfig, region: str, state_dir: Path) -> dict[str, Any]:
    """What ``meshd_kms_provider(name, config)`` receives: the provider's settings plus where the region lives."""
    kms = cfg.kms
    out: dict[str, Any] = dict(kms.settings)
    out.update({"region": region, "state_dir": str(state_dir), "keys_dir": str(keys_dir_of(state_dir))})
    if kms.provider == "local":
        out.update({"kek_file": str(kms.kek_file) if kms.kek_file else None,
                    "kek_credential": kms.kek_credential, "create_kek": kms.create_kek})
    return out


def open_provider(cfg: KeysConfig, region: str, state_dir: Path, lookup: ProviderLookup | None) -> KMSProvider:
    """The configured KMS provider; :class:`KEKError` if none answers to its name or it cannot open."""
    settings = provider_settings(cfg, region, state_dir)
    if cfg.kms.provider == "local":  # builtin: opened here, so its KEKError reaches the caller as it is
        return LocalKMSProvider.from_settings(settings)
    provider = lookup(cfg.kms.provider, settings) if lookup is not None else None
    if provider is None:
        raise KEKError("unknown_provider", name=cfg.kms.provider)
    return provider


class KeyManager:
    """The keyrings of one region, opened lazily and kept open."""

    def __init__(self, *, region: str, state_dir: Path, cfg: KeysConfig, lookup: ProviderLookup | None = None,
                 clock: Callable[[], float] = time.time, on_rotated: RotationCallback | None = None,
                 logger: logging.Logger | None = None, reserve_block: int | None = None,
                 on_failure: FailureCallback | None = None):
        self.region = region
        self._on_failure = on_failure
        self._reserve_block = reserve_block
        self.state_dir = Path(state_dir)
        self.keys_dir = keys_dir_of(self.state_dir)
        self.cfg = cfg
        self._lookup = lookup
        self.clock = clock
        self._on_rotated = on_rotated
        self.log = logger or logging.getLogger("meshd.keys")
        self._provider: KMSProvider | None = None
        self._rings: dict[str, Keyring] = {}
        self._lock = threading.RLock()

    @property
    def policy(self) -> Policy:
        return Policy(self.cfg.max_encryptions_per_version, self._reserve_block or self.cfg.count_reserve_block)

    @property
    def provider(self) -> KMSProvider:
        """The KMS provider, opened on first use (which may create a fresh region's KEK)."""
        with self._lock:
            if self._provider is None:
                self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                self.keys_dir.mkdir(exist_ok=True, mode=0o700)
                self._provider = open_provider(self.cfg, self.region, self.state_dir, self._lookup)
            return self._provider

    def path_of(self, purpose: str) -> Path:
        return self.keys_dir / f"{purpose}.json"

    def purposes(self) -> list[str]:
        """Purposes that have a keyring file, plus those already open."""
        on_disk = {p.stem for p in self.keys_dir.glob("*.json")} if self.keys_dir.is_dir() else set()
        return sorted({p for p in on_disk if PURPOSE_RE.match(p)} | set(self._rings))

    def keyring(self, purpose: str, *, create: bool = True) -> Keyring:
        """The keyring for ``purpose``; created (version 1) on first use when ``create``."""
        if not PURPOSE_RE.match(purpose or ""):
            raise KeyringError("bad_purpose", purpose=purpose)
        ring = self._rings.get(purpose)
        if ring is not None:
            return ring
        with self._lock:
            ring = self._rings.get(purpose)
            if ring is None:
                file = KeyringFile(self.path_of(purpose))
                if not create and not file.exists():
                    raise KeyringError("no_keyring", purpose=purpose, keys_dir=str(self.keys_dir))
                ring = Keyring.open_or_create(file, self.provider, self.policy, region=self.region, purpose=purpose,
                                              create=create, clock=self.clock, on_rotated=self._on_rotated,
                                              on_failure=self._on_failure, logger=self.log)
                self._rings[purpose] = ring
            return ring

    def open_all(self, purposes: Iterable[str] = ()) -> list[Keyring]:
        """Open every keyring on disk and create those in ``purposes``."""
        for purpose in purposes:
            self.keyring(purpose)
        return [self.keyring(p, create=False) for p in self.purposes()]

    # ------------------------------------------------------------ policy

    def rotate_by(self, created: float) -> float:
        """When a key made at ``created`` is due for rotation (90 days when automatic rotation is off)."""
        return created + (self.cfg.auto_rotate_period or DEFAULT_ROTATE_PERIOD)

    def describe(self, ring: Keyring, now: float | None = None) -> dict[str, Any]:
        """A keyring's status and federation metadata: its facts plus age, due date and overdue flag."""
        now = self.clock() if now is None else now
        meta = ring.metadata()
        due = self.rotate_by(meta["created"])
        meta.update({"age_s": round(max(0.0, now - meta["created"]), 3), "rotate_by": due,
                     "overdue": now > due + self.cfg.overdue_grace})
        return meta

    def rotate_due(self, now: float | None = None) -> list[dict[str, Any]]:
        """Rotate every keyring whose latest version is older than ``auto_rotate_period``."""
        period = self.cfg.auto_rotate_period
        if not period:
            return []
        now = self.clock() if now is None else now
        rotated = []
        for ring in list(self._rings.values()):
            if now - ring.created() >= period:
                rotated.append(ring.rotate("age"))
        return rotated

    def refresh(self) -> None:
        """Pick up changes other processes (CLI commands) made to open keyrings."""
        for ring in list(self._rings.values()):
            try:
                ring.refresh()
            except KeyringError as exc:
                self.log.error("keyring %s: %s", ring.name, exc)
