"""Loading plugins and calling their hooks safely, behind a typed facade.

Builtin plugins (``plugins/``, imported as ``meshd_plugins.*``) and
third-party ones load the same way: from the ``meshd`` entry-point group.
:class:`Hooks` wraps pluggy's ``pm.hook`` so the core reads plainly
(``await daemon.hooks.member_changed(...)``) and so that every
implementation runs in isolation: one that raises is logged with its
plugin's name and counted, and the others still run.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable, Sequence
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from .config import ConfigError, ConfigIssue, LoadedConfig, load_config
from .metrics import Metrics

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .alerting import Alert, DeliveryResult, Notification
    from .daemon import Daemon
    from .decisions import Decision, Proposal, Veto
    from .healthstate import HealthCheck, HealthReport
    from .httpapi import Route
    from .kms import DataKeyring, KMSProvider
    from .members import Member
    from .service import Service

ENTRY_POINT_GROUP = "meshd"

log = logging.getLogger("meshd.plugins")


def new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def load_entry_points(pm: pluggy.PluginManager, *, blocked: Iterable[str] = (),
                      errors: list[str] | None = None) -> list[str]:
    """Register every plugin of the ``meshd`` entry-point group that is not blocked.

    A plugin that fails to import is logged and skipped (its name goes to
    ``errors``): a broken third-party package must not stop a region's
    daemon. Returns the names registered.
    """
    for name in blocked:
        pm.set_blocked(name)
    loaded = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if pm.is_blocked(ep.name) or pm.has_plugin(ep.name):
            continue
        try:
            obj = ep.load()
            plugin = obj() if inspect.isclass(obj) else obj
            pm.register(plugin, name=ep.name)
        except Exception as exc:
            log.error("plugin %s (%s) failed to load: %s: %s", ep.name, ep.value, type(exc).__name__, exc)
            if errors is not None:
                errors.append(ep.name)
            continue
        loaded.append(ep.name)
    return loaded


class Hooks:
    """The typed facade over ``pm.hook``; one per daemon (or CLI invocation)."""

    def __init__(self, pm: pluggy.PluginManager, metrics: Metrics | None = None,
                 logger: logging.Logger | None = None):
        self.pm = pm
        self.log = logger or log
        self.metrics = metrics
        self.load_errors: list[str] = []

    @classmethod
    def load(cls, *, blocked: Iterable[str] = (), extra: Sequence[tuple[str, object]] = (),
             metrics: Metrics | None = None, logger: logging.Logger | None = None) -> Hooks:
        """A manager with every installed plugin but ``blocked``, plus ``extra`` (name, plugin) pairs."""
        hooks = cls(new_plugin_manager(), metrics, logger)
        for name, plugin in extra:
            hooks.pm.register(plugin, name=name)
        load_entry_points(hooks.pm, blocked=blocked, errors=hooks.load_errors)
        return hooks

    def plugin_names(self) -> list[str]:
        return sorted(name for name, plugin in self.pm.list_name_plugin() if plugin is not None)

    def disable(self, names: Iterable[str]) -> list[str]:
        """Unregister and block ``names``; return the names that matched no plugin."""
        unknown = []
        for name in names:
            if self.pm.get_plugin(name) is None:
                unknown.append(name)
            else:
                self.pm.unregister(name=name)
            self.pm.set_blocked(name)
        return unknown

    # ------------------------------------------------------------ calling

    def _impls(self, name: str) -> list[Any]:
        impls = getattr(self.pm.hook, name).get_hookimpls()
        # pluggy calls the last registered (and tryfirst) implementations first.
        return [i for i in reversed(impls) if not (i.hookwrapper or getattr(i, "wrapper", False))]

    def _failed(self, plugin: str, hook: str, exc: BaseException) -> None:
        if self.metrics is not None:
            self.metrics.counter("plugin_errors_total", "Exceptions raised by plugin hooks",
                                 ["plugin", "hook"]).labels(plugin, hook).inc()
        self.log.error("plugin %s failed in %s: %s: %s", plugin, hook, type(exc).__name__, exc, exc_info=exc)

    def _run_sync(self, impl: Any, hook: str, kwargs: dict[str, Any]) -> Any:
        """Run one implementation; None if it raised (logged and counted)."""
        try:
            result = impl.function(*[kwargs[a] for a in impl.argnames])
            if inspect.isawaitable(result):
                if hasattr(result, "close"):
                    result.close()
                raise TypeError(f"{hook} must not return an awaitable")
        except Exception as exc:
            self._failed(impl.plugin_name, hook, exc)
            return None
        return result

    def call_sync(self, name: str, /, *, firstresult: bool = False, **kwargs: Any) -> Any:
        """Call hook ``name`` outside the event loop; each implementation isolated.

        ``name`` is positional-only: hooks may have an argument called ``name``
        (``meshd_kms_provider``).
        """
        results = []
        for impl in self._impls(name):
            result = self._run_sync(impl, name, kwargs)
            if result is not None:
                if firstresult:
                    return result
                results.append(result)
        return None if firstresult else results

    async def call(self, name: str, /, *, firstresult: bool = False, **kwargs: Any) -> Any:
        """Call hook ``name``, awaiting awaitable results; each implementation isolated."""
        results = []
        for impl in self._impls(name):
            try:
                result = impl.function(*[kwargs[a] for a in impl.argnames])
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                self._failed(impl.plugin_name, name, exc)
                continue
            if result is not None:
                if firstresult:
                    return result
                results.append(result)
        return None if firstresult else results

    # ------------------------------------------------------------ configuration

    def config_models(self) -> dict[str, type[BaseModel]]:
        models: dict[str, type[BaseModel]] = {}
        for result in self.call_sync("meshd_config_models"):
            for section, model in result.items():
                if section in models:
                    self.log.error("config section %r is claimed by two plugins; keeping the first", section)
                    continue
                models[section] = model
        return models

    def load_config(self, path: Any) -> LoadedConfig:
        """Load a daemon config with every plugin's sections and checks; raise :class:`ConfigError`."""
        config = load_config(path, self.config_models())
        issues: list[ConfigIssue] = []
        for result in self.call_sync("meshd_validate_config", config=config, hooks=self):
            issues.extend(result)
        if issues:
            raise ConfigError(issues)
        return config

    def federation_files(self) -> list[str]:
        return sorted({name for result in self.call_sync("meshd_federation_files") for name in result})

    def decrypt_secret(self, config: LoadedConfig, value: str) -> str | None:
        return self.call_sync("meshd_decrypt_secret", firstresult=True, config=config, value=value, hooks=self)

    def cli_commands(self, subparsers: Any, t: Any) -> None:
        self.call_sync("meshd_cli_commands", subparsers=subparsers, t=t)

    # ------------------------------------------------------------ lifecycle

    async def startup(self, daemon: Daemon) -> None:
        await self.call("meshd_startup", daemon=daemon)

    def services(self, daemon: Daemon) -> list[tuple[str, Service]]:
        """``(plugin name, service)`` pairs from every plugin."""
        out = []
        for impl in self._impls("meshd_services"):
            result = self._run_sync(impl, "meshd_services", {"daemon": daemon})
            out.extend((impl.plugin_name, svc) for svc in result or ())
        return out

    async def reload(self, daemon: Daemon, previous: LoadedConfig) -> None:
        await self.call("meshd_reload", daemon=daemon, previous=previous)

    async def shutdown(self, daemon: Daemon) -> None:
        await self.call("meshd_shutdown", daemon=daemon)

    async def bus_state(self, daemon: Daemon, connected: bool) -> None:
        await self.call("meshd_bus_state", daemon=daemon, connected=connected)

    # ------------------------------------------------------------ observability

    async def status(self, daemon: Daemon) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for part in await self.call("meshd_status", daemon=daemon):
            merged.update(part)
        return merged

    def health_checks(self, daemon: Daemon) -> list[HealthCheck]:
        return [c for result in self.call_sync("meshd_health_checks", daemon=daemon) for c in result]

    def http_routes(self, daemon: Daemon) -> list[Route]:
        return [r for result in self.call_sync("meshd_http_routes", daemon=daemon) for r in result]

    def metrics_collectors(self, daemon: Daemon) -> list[Any]:
        return [c for result in self.call_sync("meshd_metrics", daemon=daemon) for c in result]

    # ------------------------------------------------------------ domain events

    def probe_kinds(self) -> dict[str, type]:
        kinds: dict[str, type] = {}
        for result in self.call_sync("meshd_probe_kinds"):
            kinds.update(result)
        return kinds

    async def region_health_changed(self, daemon: Daemon, report: HealthReport,
                                    previous: HealthReport | None) -> None:
        await self.call("meshd_region_health_changed", daemon=daemon, report=report, previous=previous)

    async def member_changed(self, daemon: Daemon, member: Member, previous: Member | None) -> None:
        await self.call("meshd_member_changed", daemon=daemon, member=member, previous=previous)

    async def failover_vote(self, daemon: Daemon, proposal: Proposal) -> list[Veto]:
        return await self.call("meshd_failover_vote", daemon=daemon, proposal=proposal)

    async def failover_committed(self, daemon: Daemon, decision: Decision) -> None:
        await self.call("meshd_failover_committed", daemon=daemon, decision=decision)

    async def region_fenced(self, daemon: Daemon, fenced: bool, reason: str) -> None:
        await self.call("meshd_region_fenced", daemon=daemon, fenced=fenced, reason=reason)

    def route_filter(self, daemon: Daemon | None, request: Any, candidates: Sequence[Any]) -> list[Any]:
        """Apply every filter in turn; a filter can only remove candidates."""
        kept = list(candidates)
        for impl in self._impls("meshd_route_filter"):
            kwargs = {"daemon": daemon, "request": request, "candidates": tuple(kept)}
            result = self._run_sync(impl, "meshd_route_filter", kwargs)
            if result is not None:
                kept = [c for c in kept if c in result]
        return kept

    def kms_provider(self, name: str, config: dict[str, Any]) -> KMSProvider | None:
        return self.call_sync("meshd_kms_provider", firstresult=True, name=name, config=config)

    def keyring(self, daemon: Daemon, purpose: str) -> DataKeyring | None:
        return self.call_sync("meshd_keyring", firstresult=True, daemon=daemon, purpose=purpose)

    async def key_rotated(self, daemon: Daemon, metadata: dict[str, Any]) -> None:
        await self.call("meshd_key_rotated", daemon=daemon, metadata=metadata)

    async def alert(self, daemon: Daemon, alert: Alert) -> None:
        await self.call("meshd_alert", daemon=daemon, alert=alert)

    async def notify(self, daemon: Daemon, notification: Notification) -> DeliveryResult | None:
        return await self.call("meshd_notify", firstresult=True, daemon=daemon, notification=notification)
