"""The keys plugin: regional keyrings, rotation, the federation's key view, encrypted config secrets."""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import logging
import time
from collections.abc import Sequence
from typing import Any

import anyio
from anyio.abc import TaskStatus

import meshd
from meshd import hookimpl
from meshd.config import ConfigError, ConfigIssue, LoadedConfig, load_config
from meshd.daemon import Daemon
from meshd.envelope import Envelope
from meshd.healthstate import HealthCheck
from meshd.httpapi import HTTPError, Request, Response, Route
from meshd.i18n import Translator
from meshd.kms import DataKeyring, KMSProvider, KMSUnavailableError
from meshd.logs import register_secret
from meshd.plugins import Hooks
from meshd.transport import Message

from .ciphertext import looks_like_text
from .configsecrets import decrypt_config_value, encrypted_values
from .errors import KEKError, KeyringError, KeysError
from .federation import FederationView, announcement
from .kek import LocalKMSProvider, check_kek_file, keyrings_wrapped_by, resolve_local_kek
from .keyring import Keyring
from .kmsservice import KmsService, service_subject
from .manager import KeyManager, keys_dir_of, provider_settings
from .settings import SECRETS_PURPOSE, KeysConfig

log = logging.getLogger("meshd.keys")

BUS_KIND = "keys"
SYNC_MIN_INTERVAL = 1.0
CLI_RESERVE_BLOCK = 16


def _lookup(hooks: Hooks | None) -> Any:
    """``meshd_kms_provider`` called through pluggy directly (not the isolating facade), so that a
    provider's failure (its KMS unreachable) reaches the operator as such, not as "no provider"."""
    if hooks is None:
        return None

    def lookup(name: str, settings: dict[str, Any]) -> KMSProvider | None:
        try:
            return hooks.pm.hook.meshd_kms_provider(name=name, config=settings)
        except Exception as exc:
            raise KEKError("provider_failed", name=name, detail=f"{type(exc).__name__}: {exc}"[:300]) from None

    return lookup


class KeysPlugin:
    """Regional key management (one instance per daemon or CLI invocation)."""

    def __init__(self) -> None:
        self._managers: dict[tuple[str, str, str, bool], KeyManager] = {}
        self._daemon: Daemon | None = None
        self._error: KeysError | None = None
        self._view: FederationView | None = None
        self._rotations: collections.deque[tuple[dict[str, Any], str]] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: anyio.Event | None = None
        self._firing: set[tuple[str, str]] = set()
        self._last_sync_answer = 0.0
        self._refused_secrets = False
        self._kms_down: str | None = None
        """Why the KMS provider's last check failed; None while it answers."""
        self._daemon_manager: KeyManager | None = None
        self._serving = False
        self._broken: dict[str, str] = {}

    # ------------------------------------------------------------ managers

    def manager_for(self, config: LoadedConfig, hooks: Hooks | None, *, short_lived: bool = False) -> KeyManager:
        """The region's key manager for ``config`` (one per state dir and settings, reused).

        ``short_lived`` (CLI commands) reserves small blocks of encryption
        counts, since what a process does not use of its block is lost.
        """
        cfg: KeysConfig = config.plugin("keys")
        key = (str(config.daemon.state_dir), config.region, cfg.model_dump_json(), short_lived)
        manager = self._managers.get(key)
        if manager is None:
            manager = KeyManager(region=config.region, state_dir=config.daemon.state_dir, cfg=cfg,
                                 lookup=_lookup(hooks), on_rotated=self._rotated,
                                 logger=logging.getLogger(f"meshd.{config.region}.keys"),
                                 reserve_block=CLI_RESERVE_BLOCK if short_lived else None,
                                 on_failure=self._decrypt_failed)
            self._managers[key] = manager
        return manager

    def _manager(self, daemon: Daemon) -> KeyManager:
        """The daemon's manager, fixed at first use: a reload does not change keys settings (restart)."""
        if self._daemon_manager is None:
            self._daemon_manager = self.manager_for(daemon.config, daemon.hooks)
        return self._daemon_manager

    @staticmethod
    def _metric(daemon: Daemon, which: str) -> Any:
        """The plugin's metrics (idempotent getters: status may be asked before startup)."""
        m = daemon.metrics
        if which == "announcements":
            return m.counter("keys_announcements_total", "Key metadata announcements, by direction and result",
                             ["direction", "result"])
        if which == "rotations":
            return m.counter("keys_rotations_total", "Key rotations in this region", ["purpose", "reason"])
        if which == "kek_ok":
            return m.gauge("keys_kek_ok", "1 while the key-encryption key opens every keyring")
        if which == "kms_up":
            return m.gauge("keys_kms_available",
                           "1 while the KMS provider answers; 0: encrypting with data keys already unwrapped")
        if which == "kms_errors":
            return m.counter("keys_kms_check_failures_total", "Checks of the KMS provider that failed")
        if which == "failures":
            return m.counter("keys_decrypt_failures_total",
                             "Ciphertexts that did not decrypt, by keyring purpose and reason", ["purpose", "reason"])
        if which == "data_key_checks":
            return m.counter("keys_data_key_checks_total",
                             "Data keys held past data_key_ttl and asked of the KMS again, by result "
                             "(confirmed, dropped: the KMS refused, unreachable: kept in use)", ["result"])
        if which == "version":
            return m.gauge("keys_latest_version", "Latest key version per keyring", ["purpose"])
        return m.gauge("keys_latest_age_seconds", "Age of the latest key per keyring", ["purpose"])

    # ------------------------------------------------------------ configuration

    @hookimpl
    def meshd_config_models(self) -> dict[str, type]:
        return {"keys": KeysConfig}

    @hookimpl
    def meshd_validate_config(self, config: LoadedConfig, hooks: Hooks) -> Sequence[ConfigIssue] | None:
        if "keys" in config.daemon.plugins.disabled:
            return None
        cfg: KeysConfig = config.plugin("keys")
        issues: list[ConfigIssue] = []
        jurisdiction_issue = self._check_kms_jurisdiction(config, cfg)
        if jurisdiction_issue is not None:
            return [jurisdiction_issue]  # never open a KMS the region may not use, even to check secrets
        values = list(encrypted_values(config.source.data))
        kek_issue = self._check_local_kek(config, cfg)
        if kek_issue is not None:
            issues.append(kek_issue)
            return issues
        if not values:
            return None
        try:
            ring = self.manager_for(config, hooks).keyring(SECRETS_PURPOSE, create=False)
        except KeysError as exc:
            keypath = values[0][0]
            return [ConfigIssue(config.path, keypath, str(exc), config.line_of(keypath), code=f"keys.{exc.code}")]
        for keypath, value in values:
            try:
                register_secret(decrypt_config_value(ring, value))
            except KeysError as exc:
                issues.append(ConfigIssue(config.path, keypath, str(exc), config.line_of(keypath),
                                          code=f"keys.{exc.code}"))
        return issues

    @staticmethod
    def _check_kms_jurisdiction(config: LoadedConfig, cfg: KeysConfig) -> ConfigIssue | None:
        """A KMS (``keys.kms`` or ``keys.migrate_to``) declared outside the region's jurisdiction, as a config issue."""
        region = config.region_map.regions.get(config.region)
        for name, section in (("kms", cfg.kms), ("migrate_to", cfg.migrate_to)):
            if section is None or section.jurisdiction is None or region is None \
                    or section.jurisdiction == region.jurisdiction:
                continue
            keypath = ("keys", name, "jurisdiction")
            exc = KEKError("kms_jurisdiction", provider=section.provider, kms=section.jurisdiction,
                           region=config.region, region_jurisdiction=region.jurisdiction)
            return ConfigIssue(config.path, keypath, str(exc), config.line_of(keypath), code=f"keys.{exc.code}")
        return None

    def _check_local_kek(self, config: LoadedConfig, cfg: KeysConfig) -> ConfigIssue | None:
        """A KEK that is exposed, or missing under existing keyrings, as a config issue (exit 2 at start)."""
        if cfg.kms.provider != "local":
            return None
        keypath: tuple[str, ...] = ("keys", "kms", "kek_credential" if cfg.kms.kek_credential else "kek_file")
        if config.line_of(keypath) == config.line_of(()):
            keypath = ("keys",)
        try:
            path, may_create = resolve_local_kek(provider_settings(cfg, config.region, config.daemon.state_dir))
            if path.exists():
                check_kek_file(path)
            elif not may_create:
                check_kek_file(path)  # raises kek_not_found
            elif keyrings_wrapped_by(keys_dir_of(config.daemon.state_dir), "local"):
                raise KEKError("kek_missing", path=str(path), keys_dir=str(keys_dir_of(config.daemon.state_dir)))
        except KEKError as exc:
            return ConfigIssue(config.path, keypath, str(exc), config.line_of(keypath), code=f"keys.{exc.code}")
        return None

    @hookimpl
    def meshd_decrypt_secret(self, config: LoadedConfig, value: str, hooks: Hooks) -> str | None:
        if not looks_like_text(value):
            return None
        ring = self.manager_for(config, hooks).keyring(SECRETS_PURPOSE, create=False)
        plain = decrypt_config_value(ring, value)
        register_secret(plain)
        return plain

    @hookimpl
    def meshd_kms_provider(self, name: str, config: dict[str, Any]) -> KMSProvider | None:
        if name != "local":
            return None
        return LocalKMSProvider.from_settings(config)

    @hookimpl
    def meshd_cli_commands(self, subparsers: argparse._SubParsersAction, t: Translator) -> None:
        from . import cli  # only commands that parse a command line need it, not the daemon
        cli.add_commands(subparsers, t, self)

    # ------------------------------------------------------------ the envelope-encryption API

    @hookimpl
    def meshd_keyring(self, daemon: Daemon, purpose: str) -> DataKeyring | None:
        if purpose == SECRETS_PURPOSE:
            if not self._refused_secrets:
                self._refused_secrets = True
                daemon.log.error("keys: the %r keyring protects config secrets and is not handed to plugins; "
                                 "use another purpose", SECRETS_PURPOSE)
            return None
        try:
            return self._manager(daemon).keyring(purpose)
        except KeysError as exc:
            daemon.log.error("keys: no keyring for %r: %s", purpose, exc)
            return None

    # ------------------------------------------------------------ lifecycle

    @hookimpl
    async def meshd_startup(self, daemon: Daemon) -> None:
        self._daemon = daemon
        cfg = self._manager(daemon).cfg
        self._loop = asyncio.get_running_loop()
        self._wake = anyio.Event()
        self._view = FederationView(cfg.overdue_grace, stale_after=3 * cfg.announce_interval)
        await self._open(daemon)
        await daemon.bus.subscribe(BUS_KIND, functools.partial(self._on_bus, daemon))
        await self._announce(daemon)
        await daemon.bus.publish(BUS_KIND, "sync", {})

    async def _open(self, daemon: Daemon) -> None:
        """Open the keyrings and start the key service; on failure, say why (retried every check)."""
        manager = self._manager(daemon)
        cfg = manager.cfg
        failed_before = self._error
        try:
            await anyio.to_thread.run_sync(manager.open_all, cfg.purposes)
            # Keys that fell due while the daemon was down rotate before the first
            # announcement, so peers never see (and alert on) the stale version.
            await anyio.to_thread.run_sync(manager.rotate_due)
        except KeysError as exc:
            if failed_before is None or str(failed_before) != str(exc):
                daemon.log.error("keys: keyrings unavailable: %s", exc)
            self._error = exc
            self._metric(daemon, "kek_ok").set(0)
            return
        self._error = None
        self._metric(daemon, "kek_ok").set(1)
        if failed_before is not None:
            daemon.log.info("keys: keyrings available again")
        if cfg.service.enabled and not self._serving:
            service = KmsService(manager, cfg.service, daemon.metrics, daemon.log.getChild("keys.service"))
            await service.serve(daemon.transport, daemon.federation, daemon.region)
            self._serving = True
            daemon.log.info("keys: region key service on %s (purposes: %s)",
                            service_subject(daemon.federation, daemon.region), ", ".join(cfg.service.purposes))

    @hookimpl
    def meshd_services(self, daemon: Daemon) -> Sequence[meshd.Service]:
        return [meshd.Service("keys-maintenance", functools.partial(self._maintain, daemon))]

    @hookimpl
    async def meshd_reload(self, daemon: Daemon, previous: LoadedConfig) -> None:
        if daemon.plugin_config("keys") != previous.plugin("keys"):
            daemon.log.warning("keys: the keys section changed; it takes effect after a restart")

    # ------------------------------------------------------------ rotation events

    def _rotated(self, ring: Keyring, meta: dict[str, Any], reason: str) -> None:
        """Called by a keyring after it rotated, from whatever thread encrypted or rotated."""
        self._rotations.append((meta, reason))
        self._poke()

    def _decrypt_failed(self, ring: Keyring, code: str) -> None:
        """Count a failed decryption (tampering, a wrong context, a retired version...) per keyring and reason."""
        if self._daemon is not None:
            self._metric(self._daemon, "failures").labels(ring.purpose, code).inc()

    def _poke(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._wake_up)
        except RuntimeError:
            pass  # the loop is shutting down

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _maintain(self, daemon: Daemon, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        manager = self._manager(daemon)
        cfg = manager.cfg
        task_status.started()
        next_announce = time.monotonic() + cfg.announce_interval
        while True:
            assert self._wake is not None
            with anyio.move_on_after(cfg.check_interval):
                await self._wake.wait()
            self._wake = anyio.Event()
            if self._rotations:
                await self._publish_rotations(daemon)
                next_announce = time.monotonic() + cfg.announce_interval
            if self._error is not None:
                await self._open(daemon)
            else:
                try:
                    await anyio.to_thread.run_sync(manager.refresh)
                    await anyio.to_thread.run_sync(manager.rotate_due)
                except (KeysError, KMSUnavailableError) as exc:  # a rotation needs the KMS: retried next check
                    daemon.log.error("keys: maintenance failed: %s", exc)
                await self._check_kms(daemon)
                await self._revalidate(daemon)
            if self._rotations:
                continue  # rotated by age just now: publish at once
            if time.monotonic() >= next_announce:
                await self._announce(daemon)
                next_announce = time.monotonic() + cfg.announce_interval
            await self._evaluate_alerts(daemon)

    async def _revalidate(self, daemon: Daemon) -> None:
        """Ask the KMS again for the data keys held past ``data_key_ttl`` (see :meth:`Keyring.revalidate`)."""
        try:
            results = await anyio.to_thread.run_sync(self._manager(daemon).revalidate)
        except Exception as exc:  # never let a provider's bug stop the maintenance loop
            daemon.log.error("keys: revalidating data keys failed: %s: %s", type(exc).__name__, exc)
            return
        counter = self._metric(daemon, "data_key_checks")
        for result in results.values():
            for outcome, versions in result.items():
                if versions:
                    counter.labels(outcome).inc(len(versions))

    async def _check_kms(self, daemon: Daemon) -> None:
        """Ask the providers in use whether their KMS answers; report a change (log, metric, KMSUnavailable alert).

        While one does not, the keyrings keep encrypting and decrypting with the
        data keys they hold in memory; nothing switches to another provider.
        """
        manager = self._manager(daemon)
        providers = manager.in_use() or [manager.provider]
        try:
            for provider in providers:
                await anyio.to_thread.run_sync(provider.check)
        except Exception as exc:  # KMSUnavailableError, or a provider's own bug: either way no working KMS
            reason = str(exc) if isinstance(exc, KMSUnavailableError) else f"{type(exc).__name__}: {exc}"
            self._metric(daemon, "kms_errors").inc()
            self._metric(daemon, "kms_up").set(0)
            if self._kms_down is None:
                daemon.log.error("keys: the KMS provider %s does not answer (encrypting with cached data keys): %s",
                                 provider.name, reason[:300])
            self._kms_down = reason[:300]
            await self._kms_alert(daemon, provider.name, "firing")
            return
        self._metric(daemon, "kms_up").set(1)
        if self._kms_down is not None:
            daemon.log.info("keys: the KMS provider %s answers again", provider.name)
            self._kms_down = None
            await self._kms_alert(daemon, provider.name, "resolved")

    async def _kms_alert(self, daemon: Daemon, provider: str, status: str) -> None:
        t = Translator(daemon.config.daemon.lang)
        params = {"region": daemon.region, "provider": provider, "reason": self._kms_down or "-"}
        await daemon.hooks.alert(daemon, meshd.Alert(
            labels={"alertname": "KMSUnavailable", "severity": "critical", "region": daemon.region},
            annotations={"summary": t("keys.alert.kms_unavailable_summary", **params),
                         "description": t("keys.alert.kms_unavailable_description", **params),
                         "runbook_url": "https://github.com/meshd/meshd/blob/main/docs/keys.md#kms-outages"},
            status=status,
        ))

    async def _publish_rotations(self, daemon: Daemon) -> None:
        while self._rotations:
            meta, reason = self._rotations.popleft()
            self._metric(daemon, "rotations").labels(meta["purpose"], reason).inc()
            await daemon.hooks.key_rotated(daemon, {**meta, "reason": reason})
        await self._announce(daemon)

    # ------------------------------------------------------------ the federation view

    def _described(self, daemon: Daemon, now: float) -> list[dict[str, Any]]:
        if self._error is not None:
            return []
        manager = self._manager(daemon)
        out = []
        for purpose in manager.purposes():
            try:
                ring = manager.keyring(purpose, create=False)
            except KeysError as exc:
                if self._broken.get(purpose) != str(exc):  # one line per change, not per status request
                    self._broken[purpose] = str(exc)
                    daemon.log.error("keys: keyring %s unavailable: %s", purpose, exc)
                continue
            if self._broken.pop(purpose, None) is not None:
                daemon.log.info("keys: keyring %s available again", purpose)
            meta = manager.describe(ring, now)
            self._metric(daemon, "version").labels(purpose).set(meta["version"])
            self._metric(daemon, "age").labels(purpose).set(meta["age_s"])
            out.append(meta)
        return out

    async def _announce(self, daemon: Daemon) -> None:
        now = time.time()
        keyrings = announcement(self._described(daemon, now))
        assert self._view is not None
        self._view.update(daemon.region, keyrings, now)
        ok = await daemon.bus.publish(BUS_KIND, "announce", {"keyrings": keyrings})
        self._metric(daemon, "announcements").labels("sent", "ok" if ok else "failed").inc()

    async def _on_bus(self, daemon: Daemon, envelope: Envelope, _message: Message) -> None:
        assert self._view is not None
        if envelope.type == "announce":
            ok = self._view.update(envelope.sender, envelope.body.get("keyrings"), time.time())
            self._metric(daemon, "announcements").labels("received", "ok" if ok else "malformed").inc()
            if not ok:
                daemon.log.warning("keys: dropped a malformed key announcement from %s", envelope.sender)
        elif envelope.type == "sync":
            now = time.monotonic()
            if now - self._last_sync_answer >= SYNC_MIN_INTERVAL:
                self._last_sync_answer = now
                await self._announce(daemon)

    async def _evaluate_alerts(self, daemon: Daemon) -> None:
        assert self._view is not None
        now = time.time()
        overdue = self._view.overdue(now)
        snapshot = self._view.snapshot(now)
        t = Translator(daemon.config.daemon.lang)
        for region, purpose in sorted(overdue | self._firing):
            firing = (region, purpose) in overdue
            if firing != ((region, purpose) in self._firing):
                daemon.log.warning("keys: key %s/%s is %s", region, purpose,
                                   "overdue for rotation" if firing else "rotated again (no longer overdue)")
            ring = next((r for r in snapshot.get(region, {}).get("keyrings", []) if r["purpose"] == purpose), None)
            params = {"region": region, "purpose": purpose,
                      "version": ring["version"] if ring else "?",
                      "age": t.duration(ring["age_s"]) if ring else "?"}
            alert = meshd.Alert(
                labels={"alertname": "KeyRotationOverdue", "severity": "warning", "region": region,
                        "purpose": purpose},
                annotations={"summary": t("keys.alert.overdue_summary", **params),
                             "description": t("keys.alert.overdue_description", **params),
                             "runbook_url": "https://github.com/meshd/meshd/blob/main/docs/keys.md#rotation"},
                status="firing" if firing else "resolved",
            )
            await daemon.hooks.alert(daemon, alert)
        self._firing = overdue

    # ------------------------------------------------------------ observability and admin API

    def status_doc(self, daemon: Daemon) -> dict[str, Any]:
        now = time.time()
        manager = self._manager(daemon)
        cfg = manager.cfg
        kms: dict[str, str] = {"provider": cfg.kms.provider}
        if self._error is None:
            try:
                kms = manager.provider.describe()
            except KeysError as exc:
                self._error = exc
        return {
            "ok": self._error is None,
            "error": str(self._error) if self._error else None,
            "kms": kms,
            "kms_unavailable": self._kms_down,
            "keyrings": self._described(daemon, now),
            "federation": self._view.snapshot(now) if self._view else {},
            "service": {"enabled": self._serving,
                        "subject": service_subject(daemon.federation, daemon.region),
                        "purposes": list(cfg.service.purposes)},
        }

    @hookimpl
    def meshd_status(self, daemon: Daemon) -> dict[str, Any]:
        return {"keys": self.status_doc(daemon)}

    @hookimpl
    def meshd_health_checks(self, daemon: Daemon) -> Sequence[HealthCheck]:
        kms = HealthCheck("kms", self._kms_down is None, self._kms_down or "the KMS provider answers")
        if self._error is None:
            return [HealthCheck("keys", True, "keyrings open"), kms]
        return [HealthCheck("keys", False, str(self._error))]

    @hookimpl
    def meshd_http_routes(self, daemon: Daemon) -> Sequence[Route]:
        return [
            Route("GET", "/v1/keys", lambda _r: Response.json(self.status_doc(daemon))),
            Route("POST", "/v1/keys/rotate", functools.partial(self._rotate_route, daemon), admin=True),
            Route("POST", "/v1/keys/{purpose}/minimums", functools.partial(self._minimums_route, daemon),
                  admin=True),
            Route("POST", "/v1/keys/rewrap", functools.partial(self._rewrap_route, daemon), admin=True),
            Route("POST", "/v1/keys/rewrap-kek", functools.partial(self._rewrap_kek_route, daemon), admin=True),
        ]

    def _purposes_of(self, daemon: Daemon, request: Request) -> list[str]:
        body = request.json() or {}
        if not isinstance(body, dict):
            raise HTTPError(400, "body must be a JSON object")
        purposes = body.get("purposes") or self._manager(daemon).purposes()
        if not isinstance(purposes, list) or not all(isinstance(p, str) for p in purposes):
            raise HTTPError(400, "purposes must be a list of names")
        return purposes

    @staticmethod
    def _error_response(exc: KeysError, status: int = 400) -> Response:
        return Response.json({"error": str(exc), "code": exc.code, "params": exc.params}, status)

    async def _rotate_route(self, daemon: Daemon, request: Request) -> Response:
        purposes = self._purposes_of(daemon, request)
        manager = self._manager(daemon)
        try:
            rings = [manager.keyring(p, create=False) for p in purposes]
            rotated = [await anyio.to_thread.run_sync(ring.rotate) for ring in rings]
        except KeyringError as exc:
            return self._error_response(exc, 404 if exc.code == "no_keyring" else 400)
        except KeysError as exc:
            return self._error_response(exc, 500)
        # Announce before answering, so "rotate" returning means peers were told.
        await self._publish_rotations(daemon)
        return Response.json({"rotated": rotated})

    async def _minimums_route(self, daemon: Daemon, request: Request) -> Response:
        body = request.json() or {}
        if not isinstance(body, dict):
            raise HTTPError(400, "body must be a JSON object")
        try:
            ring = self._manager(daemon).keyring(request.params["purpose"], create=False)
            meta = await anyio.to_thread.run_sync(functools.partial(
                ring.set_min_versions, body.get("min_decryption_version"), body.get("min_encryption_version")))
        except KeyringError as exc:
            return self._error_response(exc, 404 if exc.code == "no_keyring" else 400)
        except KeysError as exc:
            return self._error_response(exc)
        await self._announce(daemon)
        return Response.json({"keyring": meta})

    async def _rewrap_route(self, daemon: Daemon, request: Request) -> Response:
        purposes = self._purposes_of(daemon, request)
        manager = self._manager(daemon)
        results: dict[str, Any] = {}
        try:
            for purpose in purposes:
                ring = manager.keyring(purpose, create=False)
                results[purpose] = await anyio.to_thread.run_sync(ring.rewrap_sources)
        except KeysError as exc:
            return self._error_response(exc, 404 if exc.code == "no_keyring" else 400)
        return Response.json({"results": results})

    async def _rewrap_kek_route(self, daemon: Daemon, request: Request) -> Response:
        """Wrap the keyrings' keys again: with their own KMS key, or, with ``{"to": provider}``, with
        ``keys.migrate_to`` as the config file says now (read again, so no restart is needed)."""
        purposes = self._purposes_of(daemon, request)
        to = (request.json() or {}).get("to")
        manager = self._manager(daemon)
        try:
            if to is not None:
                self._adopt_migration_target(daemon, manager, str(to))
            done = await anyio.to_thread.run_sync(
                functools.partial(manager.rewrap_kek, purposes, migrate=to is not None))
        except KeyringError as exc:
            return self._error_response(exc, 404 if exc.code == "no_keyring" else 400)
        except KEKError as exc:
            status = 400 if exc.code in ("no_migration_target", "migration_target_mismatch") else 500
            return self._error_response(exc, status)
        except KeysError as exc:
            return self._error_response(exc, 500)
        await self._announce(daemon)
        return Response.json({"rewrapped": done, "kms": manager.provider.describe()})

    def _adopt_migration_target(self, daemon: Daemon, manager: KeyManager, to: str) -> None:
        """Take ``keys.migrate_to`` from the config file as it is now; it must name provider ``to``."""
        try:
            fresh = load_config(daemon.config.path, daemon.hooks.config_models())
        except ConfigError as exc:
            raise KEKError("migration_config", path=str(daemon.config.path),
                           detail="; ".join(str(i) for i in exc.issues)[:500]) from None
        target = fresh.plugin("keys").migrate_to
        if target is None:
            raise KEKError("no_migration_target")
        if target.provider != to:
            raise KEKError("migration_target_mismatch", to=to, configured=target.provider)
        issue = self._check_kms_jurisdiction(fresh, fresh.plugin("keys"))
        if issue is not None:
            raise KEKError("migration_config", path=str(daemon.config.path), detail=issue.message)
        if manager.cfg.migrate_to != target:
            manager.set_migration_target(target)
