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
from .settings import DEFAULT_ROTATE_PERIOD, PURPOSE_RE, KeysConfig, KMSSettings

ProviderLookup = Callable[[str, dict[str, Any]], KMSProvider | None]


def keys_dir_of(state_dir: Path) -> Path:
    return Path(state_dir) / "keys"


def provider_settings(cfg: KeysConfig, region: str, state_dir: Path, kms: KMSSettings | None = None, *,
                      migration_target: bool = False) -> dict[str, Any]:
    """What ``meshd_kms_provider(name, config)`` receives: the provider's settings plus where the region lives.

    ``kms`` is the provider section (default ``cfg.kms``; ``cfg.migrate_to`` for the target of a migration).
    """
    kms = kms or cfg.kms
    out: dict[str, Any] = dict(kms.settings)
    out.update({"region": region, "state_dir": str(state_dir), "keys_dir": str(keys_dir_of(state_dir))})
    if kms.provider == "local":
        # A migration target's KEK is made by the operator: the keyrings on disk belong to the other KEK,
        # so "no keyring yet" cannot tell a fresh region from a lost KEK file.
        create = kms.create_kek and not migration_target
        out.update({"kek_file": str(kms.kek_file) if kms.kek_file else None,
                    "kek_credential": kms.kek_credential, "create_kek": create})
    return out


def open_provider(cfg: KeysConfig, region: str, state_dir: Path, lookup: ProviderLookup | None,
                  kms: KMSSettings | None = None, *, migration_target: bool = False) -> KMSProvider:
    """The provider of section ``kms`` (default ``cfg.kms``); :class:`KEKError` if none answers or it cannot open."""
    kms = kms or cfg.kms
    settings = provider_settings(cfg, region, state_dir, kms, migration_target=migration_target)
    if kms.provider == "local":  # builtin: opened here, so its KEKError reaches the caller as it is
        return LocalKMSProvider.from_settings(settings)
    provider = lookup(kms.provider, settings) if lookup is not None else None
    if provider is None:
        raise KEKError("unknown_provider", name=kms.provider)
    return provider


def matches(provider: KMSProvider, kek: dict[str, str]) -> bool:
    """Whether ``provider`` is the KEK a keyring file records (``{"provider", "kek_id"}``)."""
    described = provider.describe()
    if kek.get("provider") and kek["provider"] != described.get("provider", provider.name):
        return False
    return not (kek.get("kek_id") and described.get("kek_id") and kek["kek_id"] != described["kek_id"])


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
        self._providers: dict[str, KMSProvider] = {}
        self._rings: dict[str, Keyring] = {}
        self._lock = threading.RLock()

    @property
    def policy(self) -> Policy:
        return Policy(self.cfg.max_encryptions_per_version, self._reserve_block or self.cfg.count_reserve_block)

    @property
    def provider(self) -> KMSProvider:
        """The provider new keyrings are made on (``migrate_to`` while set, else ``kms``), opened on first use."""
        return self._open_section("migrate_to" if self.cfg.migrate_to is not None else "kms")

    def _open_section(self, which: str) -> KMSProvider:
        """The provider of ``keys.kms`` or ``keys.migrate_to``, opened once (which may create a fresh region's KEK)."""
        with self._lock:
            provider = self._providers.get(which)
            if provider is None:
                self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                self.keys_dir.mkdir(exist_ok=True, mode=0o700)
                section = self.cfg.kms if which == "kms" else self.cfg.migrate_to
                provider = open_provider(self.cfg, self.region, self.state_dir, self._lookup, section,
                                         migration_target=which == "migrate_to")
                self._providers[which] = provider
            return provider

    def provider_for(self, kek: dict[str, str]) -> KMSProvider:
        """The configured provider that wraps a keyring recorded as wrapped by ``kek``.

        Without ``migrate_to`` that is ``keys.kms`` (a mismatch is the
        keyring's to report). During a migration, each keyring opens with
        whichever of the two it names; the one it names first, so a keyring
        already moved never needs the old KEK (which may be gone).
        """
        target = self.cfg.migrate_to
        if target is None or not kek:
            return self._open_section("kms")
        order = ["migrate_to", "kms"] if kek.get("provider") == target.provider else ["kms", "migrate_to"]
        for which in order:
            section = target if which == "migrate_to" else self.cfg.kms
            if kek.get("provider") not in (None, section.provider):
                continue
            provider = self._open_section(which)
            if matches(provider, kek):
                return provider
        return self._open_section("kms")

    def set_migration_target(self, target: KMSSettings) -> None:
        """Adopt a new ``keys.migrate_to`` while running (the config file changed; see ``migrate-kek``)."""
        with self._lock:
            self.cfg = self.cfg.model_copy(update={"migrate_to": target})
            self._providers.pop("migrate_to", None)

    def in_use(self) -> list[KMSProvider]:
        """The providers opened so far (those the KMS check should reach)."""
        with self._lock:
            return list(self._providers.values())

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
                exists = file.exists()
                if not create and not exists:
                    raise KeyringError("no_keyring", purpose=purpose, keys_dir=str(self.keys_dir))
                provider = self.provider_for(file.read()[0].kek) if exists else self.provider
                ring = Keyring.open_or_create(file, provider, self.policy, region=self.region, purpose=purpose,
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

    # ------------------------------------------------------------ KEK

    def revalidate(self, max_age: float | None = None) -> dict[str, dict[str, list[int]]]:
        """:meth:`Keyring.revalidate` on every open keyring (``max_age`` default ``data_key_ttl``; 0 does nothing)."""
        max_age = self.cfg.data_key_ttl if max_age is None else max_age
        if not max_age:
            return {}
        return {ring.purpose: ring.revalidate(max_age) for ring in list(self._rings.values())}

    def rewrap_kek(self, purposes: Iterable[str] = (), *, migrate: bool = False) -> list[dict[str, Any]]:
        """Wrap every keyring's keys again: with its own provider, or with ``migrate_to`` when ``migrate``.

        Keyrings already on the target are rewrapped too (harmless, and it
        picks up a rotated KMS key), so a migration cut short is finished
        by running it again.
        """
        if migrate and self.cfg.migrate_to is None:
            raise KEKError("no_migration_target")
        target = self._open_section("migrate_to") if migrate else None
        return [self.keyring(p, create=False).rewrap_kek(target) for p in (list(purposes) or self.purposes())]
