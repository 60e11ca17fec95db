"""The regional daemon: lifecycle, signals, systemd notify, reload and graceful leave.

One :class:`Daemon` per region. Its life, logged one line per change::

    starting -> connecting -> ready <-> reloading -> stopping -> stopped

It serves its local HTTP endpoint from the start (``/healthz`` answers 503
until ready), connects to the bus with backoff for as long as it takes, runs
the plugins' startup hooks and supervised services, then tells systemd
READY=1. SIGHUP reloads the config (an invalid one is reported and the old
one kept); SIGTERM announces a graceful leave, runs the shutdown hooks and
exits within 5 seconds. Nothing a plugin or a peer does can end the process.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from . import __version__
from .bus import Bus
from .config import ConfigError, LoadedConfig
from .envelope import Opener, Sealer
from .httpapi import HttpServer, Request, Response, Route
from .identity import Signer, TrustStore, load_private_key
from .logs import register_secret
from .metrics import CONTENT_TYPE, Metrics
from .plugins import Hooks
from .sdnotify import Notifier
from .service import Service, supervise
from .transport import NatsTransport, Transport
from .yamlsource import EncryptedValue

SHUTDOWN_BUDGET = 4.0
"""Seconds the leave announcement, shutdown hooks and closing the bus get together (the README promises 5)."""

BUS_CLOSE_RESERVE = 1.5
"""The part of :data:`SHUTDOWN_BUDGET` kept for closing the bus, whatever the hooks take (NATS bounds itself so)."""


def next_incarnation(state_dir: Path) -> int:
    """A boot number larger than any before it, kept in ``<state_dir>/incarnation``.

    Peers reject envelopes from an older incarnation as replays, so it must
    grow across restarts even if the file is lost: it is at least the
    current time in milliseconds.
    """
    path = state_dir / "incarnation"
    try:
        previous = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        previous = 0
    value = max(previous + 1, time.time_ns() // 1_000_000)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{value}\n")
    os.replace(tmp, path)
    return value


def admin_token(state_dir: Path) -> str:
    """The local admin API token, created (mode 0600) on first use."""
    path = state_dir / "admin.token"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


class SecretUnavailable(Exception):
    """An ``!encrypted`` config value could not be decrypted."""


class Daemon:
    """One region's daemon. Plugins receive it as ``daemon`` in every hook."""

    def __init__(self, config: LoadedConfig, hooks: Hooks, *, transport: Transport | None = None,
                 notifier: Notifier | None = None):
        self.config = config
        self.hooks = hooks
        self.metrics = hooks.metrics or Metrics()
        hooks.metrics = self.metrics
        hooks.count_load_errors()
        self.log = logging.getLogger(f"meshd.{config.region}")
        hooks.log = self.log.getChild("plugins")
        self.state_dir = config.daemon.state_dir
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.incarnation = next_incarnation(self.state_dir)
        self.notifier = notifier or Notifier()
        self.started_at = time.time()
        self.state = "starting"

        d = config.daemon
        if transport is None:
            nats = d.nats if d.nats.inbox_prefix else d.nats.model_copy(update={"inbox_prefix": f"_INBOX.{d.region}"})
            transport = NatsTransport(nats, name=f"meshd-{d.federation}-{d.region}", secret=self.secret)
        self.transport = transport
        signer = Signer(load_private_key(d.identity.private_key))
        self.bus = Bus(
            transport,
            Sealer(d.federation, d.region, signer, self.incarnation),
            Opener(d.federation, TrustStore(config.trust), clock_skew=d.bus.clock_skew,
                   max_payload=d.bus.max_payload, replay_window=d.bus.replay_window),
            self.metrics,
            self.log.getChild("bus"),
        )
        token = admin_token(self.state_dir)  # created now, so the CLI can read it before its first call
        self.http = HttpServer(d.http.listen, d.http.port, lambda: token, self.metrics)
        self._stop = anyio.Event()
        self._ready = anyio.Event()
        self._tg: TaskGroup | None = None
        self._started = False

        self._state_gauge = self.metrics.gauge("daemon_state", "1 for the daemon's current lifecycle state", ["state"])
        self._bus_gauge = self.metrics.gauge("bus_connected", "1 while connected to the bus")
        self._reloads = self.metrics.counter("config_reloads_total", "Config reloads, by result", ["result"])
        self.metrics.gauge("daemon_incarnation", "This daemon's boot incarnation").set(self.incarnation)
        self.metrics.gauge("daemon_info", "Static facts about this daemon", ["version", "region", "federation"]).labels(
            __version__, d.region, d.federation).set(1)

    # ------------------------------------------------------------ facts for plugins

    @property
    def region(self) -> str:
        return self.config.region

    @property
    def federation(self) -> str:
        return self.config.federation

    @property
    def regions(self) -> dict[str, Any]:
        """The federation's regions from region_map.yaml, by name."""
        return self.config.region_map.regions

    @property
    def tenants(self) -> Any:
        """The tenant directory (:class:`meshd.tenantdir.TenantDirectory`), or None; the same as ``config.tenants``."""
        return self.config.tenants

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def wait_ready(self) -> None:
        await self._ready.wait()

    def not_ready(self) -> list[str]:
        """Why this daemon cannot yet answer from the federation's state (i18n keys); empty once it can.

        Its services may report ready before a plugin has read what it needs (a service's readiness
        has a timeout), so the plugins' ``meshd_not_ready`` hooks are asked as well.
        """
        reasons = [] if self.ready else ["cli.not_ready.starting"]
        return reasons + self.hooks.not_ready(self)

    def plugin_config(self, name: str) -> Any:
        return self.config.plugin(name)

    def secret(self, value: str) -> str:
        """The plaintext of a config secret, decrypting ``!encrypted`` values through the keys plugin.

        The plaintext is registered with the log scrubber before it is returned.
        """
        if isinstance(value, EncryptedValue):
            plain = self.hooks.decrypt_secret(self.config, str(value))
            if plain is None:
                raise SecretUnavailable(
                    "an !encrypted config value cannot be decrypted: no enabled plugin decrypts it "
                    "(is the keys plugin installed and enabled, with its key-encryption key?)"
                )
            register_secret(plain)
            return plain
        register_secret(value)
        return value

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any, name: str = "") -> None:
        """Run ``fn(*args)`` in the daemon's task group; its exceptions are logged, never raised."""
        if self._tg is None:
            raise RuntimeError("the daemon is not running")

        async def guarded() -> None:
            try:
                await fn(*args)
            except Exception as exc:
                self.log.error("task %s failed: %s: %s", name or getattr(fn, "__name__", "?"),
                               type(exc).__name__, exc, exc_info=exc)

        self._tg.start_soon(guarded, name=name or None)

    async def start_services(self, plugin: str, services: list[Service]) -> None:
        """Start and supervise ``services`` of ``plugin`` now, as startup does with ``meshd_services``.

        For a plugin that a reload brings to life (e.g. metering given its first meters):
        ``meshd_services`` is asked only once, at startup.
        """
        if self._tg is None:
            raise RuntimeError("the daemon is not running")
        for service in services:
            await self._tg.start(supervise, service, plugin, self.log.getChild(plugin), self.metrics)

    def stop(self) -> None:
        """Ask the daemon to leave gracefully and stop (what SIGTERM does)."""
        self._stop.set()

    # ------------------------------------------------------------ lifecycle

    def _set_state(self, state: str, detail: str = "") -> None:
        if state == self.state and not detail:
            return
        self._state_gauge.labels(self.state).set(0)
        self.state = state
        self._state_gauge.labels(state).set(1)
        self.log.info("state: %s%s", state, f" ({detail})" if detail else "")
        self.notifier.status(f"{state}{': ' + detail if detail else ''}")

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until :meth:`stop`; ``task_status.started()`` fires once READY."""
        self._set_state("starting", f"region {self.region}, incarnation {self.incarnation}")
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._start, task_status)
            await self._stop.wait()
            with anyio.CancelScope(shield=True):
                budget = SHUTDOWN_BUDGET - BUS_CLOSE_RESERVE
                with anyio.move_on_after(budget) as scope:
                    await self._shutdown()
                if scope.cancelled_caught:
                    self.log.warning("shutdown hooks took longer than %.1fs; cut short", budget)
                await self.transport.close()
            tg.cancel_scope.cancel()
        self._tg = None
        self._set_state("stopped")

    async def _start(self, task_status: TaskStatus[None]) -> None:
        d = self.config.daemon
        if d.http.port or d.http.port == 0:
            self._install_routes()
            assert self._tg is not None
            port = await self._tg.start(self.http.serve)
            self.log.info("local HTTP on http://%s:%d (/healthz /metrics /status)", d.http.listen, port)
        self._set_state("connecting", ", ".join(d.nats.servers))
        self.transport.on_state(self._on_bus_state)
        await self.bus.connect()
        self._bus_gauge.set(1)
        for collector in self.hooks.metrics_collectors(self):
            self.metrics.register(collector)
        await self._open_tenant_registry()
        await self.hooks.startup(self)
        assert self._tg is not None
        # Started together: a service that is ready only once it has read the bus (failover, over a WAN
        # link or while JetStream is down) must not hold back the others.
        async with anyio.create_task_group() as starting:
            for plugin, service in self.hooks.services(self):
                starting.start_soon(self._tg.start, supervise, service, plugin, self.log.getChild(plugin),
                                    self.metrics)
        self._started = True
        interval = self.notifier.watchdog_interval()
        if interval:
            self._tg.start_soon(self._watchdog, interval)
        self._ready.set()
        self._set_state("ready", f"plugins: {', '.join(self.hooks.plugin_names()) or 'none'}")
        self.notifier.ready(f"ready: region {self.region}")
        task_status.started()

    async def _open_tenant_registry(self) -> None:
        """Read the KV tenant registry whole before any plugin starts, then follow it (``tenants: {registry: kv}``).

        Plugins' startup hooks then see every tenant; until the registry can be read the daemon stays
        ``connecting`` (its watch retries with backoff), as it does for the bus itself.
        """
        from .tenantkv import KvTenantDirectory

        directory = self.config.tenants
        if not isinstance(directory, KvTenantDirectory):
            return
        assert self._tg is not None
        directory.log = self.log.getChild("tenants")
        directory.attach_metrics(self.metrics)
        await self._tg.start(directory.run, self.transport)

    async def _watchdog(self, interval: float) -> None:
        # Pinged from the event loop itself, so a wedged loop stops the pings
        # and systemd restarts the daemon.
        while True:
            self.notifier.watchdog()
            await anyio.sleep(interval)

    async def _on_bus_state(self, connected: bool) -> None:
        if self.state in ("stopping", "stopped"):
            return  # our own close, not a failure
        self.bus._set_connected(connected)
        self._bus_gauge.set(1 if connected else 0)
        if connected:
            self.log.info("bus connection restored")
        else:
            self.log.warning("bus connection lost; isolated until it comes back")
        if self._started:
            await self.hooks.bus_state(self, connected)

    async def _shutdown(self) -> None:
        self._set_state("stopping")
        self.notifier.stopping()
        if self._started and self.bus.connected:
            await self.bus.publish("leave", "leave", {"reason": "shutdown"})
        if self._started:
            await self.hooks.shutdown(self)

    async def reload(self) -> bool:
        """Re-read the config file; keep the running config if the new one is invalid."""
        self._set_state("reloading", str(self.config.path))
        self.notifier.reloading()
        try:
            new = await anyio.to_thread.run_sync(self.hooks.load_config, self.config.path)
        except ConfigError as exc:
            self._reloads.labels("invalid").inc()
            for issue in exc.issues:
                self.log.error("reload rejected: %s", issue)
            self.log.error("keeping the running config (%d problem(s) in the new one)", len(exc.issues))
            self._set_state("ready", "reload rejected")
            self.notifier.ready()
            return False
        for key in ("federation", "region", "state_dir", "identity", "nats", "http", "plugins"):
            if getattr(new.daemon, key) != getattr(self.config.daemon, key):
                self.log.warning("config key %r changed; it takes effect after a restart", key)
        self._keep_tenant_registry(new)
        previous, self.config = self.config, new
        await self.hooks.reload(self, previous)
        self._reloads.labels("ok").inc()
        self._set_state("ready", "config reloaded")
        self.notifier.ready()
        return True

    def _keep_tenant_registry(self, new: LoadedConfig) -> None:
        """A reloaded config keeps following the registry opened at start: it is opened once, before the plugins."""
        from .tenantkv import KvTenantDirectory

        if isinstance(self.config.tenants, KvTenantDirectory) or isinstance(new.tenants, KvTenantDirectory):
            if new.daemon.tenants != self.config.daemon.tenants:
                self.log.warning("config key 'tenants' changed; it takes effect after a restart")
            new.tenants = self.config.tenants

    # ------------------------------------------------------------ local HTTP

    def _install_routes(self) -> None:
        self.http.add(Route("GET", "/healthz", self._healthz))
        self.http.add(Route("GET", "/metrics", lambda _r: Response(200, self.metrics.render(), CONTENT_TYPE)))
        self.http.add(Route("GET", "/status", self._status))
        self.http.add(Route("POST", "/v1/reload", self._reload_route, admin=True))
        for route in self.hooks.http_routes(self):
            self.http.add(route)

    def _healthz(self, _request: Request) -> Response:
        checks = [{"name": "bus", "ok": self.bus.connected, "detail": "connected" if self.bus.connected else
                   "not connected"},
                  {"name": "ready", "ok": self.ready, "detail": self.state}]
        for check in self.hooks.health_checks(self):
            checks.append({"name": check.name, "ok": check.ok, "detail": check.detail, **check.data})
        ok = all(c["ok"] for c in checks)
        return Response.json({"ok": ok, "region": self.region, "checks": checks}, 200 if ok else 503)

    async def status(self) -> dict[str, Any]:
        """The status document of ``/status`` and ``meshd status --json``."""
        doc: dict[str, Any] = {
            "region": self.region,
            "federation": self.federation,
            "version": __version__,
            "state": self.state,
            "incarnation": self.incarnation,
            "uptime_s": round(time.time() - self.started_at, 3),
            "bus": {"connected": self.bus.connected},
            "plugins": self.hooks.plugin_names(),
        }
        doc.update(await self.hooks.status(self))
        return doc

    async def _status(self, _request: Request) -> Response:
        return Response.json(await self.status())

    async def _reload_route(self, _request: Request) -> Response:
        ok = await self.reload()
        return Response.json({"reloaded": ok}, 200 if ok else 409)


# ---------------------------------------------------------------- process entry


async def _signals(daemon: Daemon) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as received:
        async for signum in received:
            if signum == signal.SIGHUP:
                await daemon.reload()
            else:
                daemon.log.info("received %s; leaving the federation", signal.Signals(signum).name)
                daemon.stop()
                return


async def serve(daemon: Daemon) -> None:
    """Run ``daemon`` as the process's main task, driven by signals."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(_signals, daemon)
        await daemon.run()
        tg.cancel_scope.cancel()
