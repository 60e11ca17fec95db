"""Loading plugins and calling their hooks safely, behind a typed facade.

Builtin plugins (``plugins/``, imported as ``meshd_plugins.*``) and
third-party ones load the same way: from the ``meshd`` entry-point group.
:class:`Hooks` wraps pluggy's ``pm.hook`` so the core reads plainly
(``await daemon.hooks.member_changed(...)``) and so that every
implementation runs in isolation: one that raises, or returns something its
hook's annotation does not allow, is logged with its plugin's name and
counted, and the others still run. How each hook is called (firstresult,
sync, the result type) is read from its spec: see :mod:`meshd.hookcontract`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pluggy
from pydantic import BaseModel, ConfigDict

from . import hookspecs
from .config import ConfigError, ConfigIssue, LoadedConfig, load_config
from .hookcontract import HookContract, describe_value, read_contract
from .metrics import Metrics

if TYPE_CHECKING:
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


class PluginRejected(ValueError):
    """A plugin breaks the hook contract in a way found at registration (a hook wrapper)."""


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, refusing at registration what meshd will not call."""

    def register(self, plugin: object, name: str | None = None) -> str | None:
        plugin_name = name or self.get_canonical_name(plugin)
        if not self.is_blocked(plugin_name):
            wrappers = self._wrapper_hooks(plugin)
            if wrappers:
                # Rather than a wrapper silently never running: the plugin would not do what its
                # author meant, so it does not run at all, and says why.
                raise PluginRejected(f"plugin {plugin_name}: {', '.join(wrappers)}: hook wrappers are not "
                                     "supported by meshd; implement the hook plainly")
        return super().register(plugin, name)

    def _wrapper_hooks(self, plugin: object) -> list[str]:
        found = []
        for attr in dir(plugin):
            opts = self.parse_hookimpl_opts(plugin, attr)
            if opts is None:
                continue
            for kind in ("wrapper", "hookwrapper"):
                if opts.get(kind):
                    found.append(f"{opts.get('specname') or attr} is a {kind}=True implementation")
        return found


def new_plugin_manager() -> PluginManager:
    pm = PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def load_entry_points(pm: pluggy.PluginManager, *, blocked: Iterable[str] = (),
                      errors: list[str] | None = None) -> list[str]:
    """Register every plugin of the ``meshd`` entry-point group that is not blocked.

    A plugin that fails to import is logged and skipped (its name goes to
    ``errors``): a broken third-party package must not stop a region's
    daemon. Returns the names registered. A blocked plugin's module is never
    imported: a region that disables a plugin does not pay for its code.
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


def installed_plugins() -> list[str]:
    """The names of the ``meshd`` entry-point group, read from package metadata without importing any plugin."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def disabled_in_config(path: str | Path | None) -> list[str]:
    """``plugins.disabled`` of the daemon config at ``path``, read before any plugin is imported.

    Only a peek, so that disabled plugins are never loaded: anything wrong
    with the file gives ``[]`` here and is reported, file:line, by the full
    validation that follows.
    """
    if path is None:
        return []
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
        names = data["plugins"]["disabled"]
    except (OSError, yaml.YAMLError, TypeError, KeyError, UnicodeDecodeError):
        return []
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


class DisabledSection(BaseModel):
    """The config section of an installed plugin that is disabled: kept, not validated, not imported.

    ``meshd check-config`` loads every plugin and validates such sections too.
    """

    model_config = ConfigDict(extra="allow", frozen=True)


class Hooks:
    """The typed facade over ``pm.hook``; one per daemon (or CLI invocation)."""

    def __init__(self, pm: pluggy.PluginManager, metrics: Metrics | None = None,
                 logger: logging.Logger | None = None):
        self.pm = pm
        self.log = logger or log
        self.metrics = metrics
        self.load_errors: list[str] = []
        self.blocked: frozenset[str] = frozenset()
        """Plugins not loaded on purpose (``plugins.disabled``): installed, but their modules never imported."""
        self._contracts: dict[str, HookContract] = {}

    @classmethod
    def load(cls, *, blocked: Iterable[str] = (), extra: Sequence[tuple[str, object]] = (),
             metrics: Metrics | None = None, logger: logging.Logger | None = None) -> Hooks:
        """A manager with every installed plugin but ``blocked``, plus ``extra`` (name, plugin) pairs."""
        hooks = cls(new_plugin_manager(), metrics, logger)
        for name, plugin in extra:
            try:
                hooks.pm.register(plugin, name=name)
            except PluginRejected as exc:
                hooks.log.error("plugin %s failed to load: %s: %s", name, type(exc).__name__, exc)
                hooks.load_errors.append(name)
        hooks.blocked = frozenset(blocked)
        load_entry_points(hooks.pm, blocked=hooks.blocked, errors=hooks.load_errors)
        return hooks

    def plugin_names(self) -> list[str]:
        return sorted(name for name, plugin in self.pm.list_name_plugin() if plugin is not None)

    def disable(self, names: Iterable[str]) -> list[str]:
        """Unregister and block ``names``; return the names that matched no plugin."""
        unknown = []
        installed = set(installed_plugins())
        for name in names:
            if self.pm.get_plugin(name) is None:
                if name not in installed:
                    unknown.append(name)
            else:
                self.pm.unregister(name=name)
            self.pm.set_blocked(name)
        return unknown

    def count_load_errors(self) -> None:
        """Count the plugins that failed to load or were refused, once metrics exist (the daemon's)."""
        if self.metrics is None:
            return
        counter = self.metrics.counter("plugin_load_errors_total",
                                       "Plugins that failed to import or were refused at registration", ["plugin"])
        for name in self.load_errors:
            counter.labels(name).inc()

    # ------------------------------------------------------------ calling

    def contract(self, name: str, kwargs: dict[str, Any] | None = None) -> HookContract:
        """How hook ``name`` is called, from its spec (cached: specs do not change)."""
        if kwargs and "firstresult" in kwargs:
            raise TypeError(f"{name}: firstresult is declared by the hook's spec (@hookspec(firstresult=True)), "
                            "not passed by the caller")
        found = self._contracts.get(name)
        if found is None:
            spec = getattr(self.pm.hook, name).spec
            if spec is None:
                raise TypeError(f"{name} is not a meshd hook")
            found = self._contracts[name] = read_contract(name, spec.function, spec.opts)
        return found

    def _impls(self, name: str) -> list[Any]:
        # pluggy calls the last registered (and tryfirst) implementations first.
        return list(reversed(getattr(self.pm.hook, name).get_hookimpls()))

    def _failed(self, plugin: str, hook: str, exc: BaseException) -> None:
        self._count_error(plugin, hook)
        self.log.error("plugin %s failed in %s: %s: %s", plugin, hook, type(exc).__name__, exc, exc_info=exc)

    def _count_error(self, plugin: str, hook: str) -> None:
        if self.metrics is not None:
            self.metrics.counter("plugin_errors_total", "Exceptions raised by plugin hooks, and results of the "
                                 "wrong type", ["plugin", "hook"]).labels(plugin, hook).inc()

    def _accepted(self, impl: Any, contract: HookContract, result: Any) -> Any:
        """``result`` if the hook's annotation allows it; None (logged and counted) if not."""
        if contract.conforms(result):
            return result
        self._count_error(impl.plugin_name, contract.name)
        self.log.error("plugin %s returned %s from %s, which expects %s; ignored", impl.plugin_name,
                       describe_value(result), contract.name, contract.declared)
        return None

    def _run_sync(self, impl: Any, contract: HookContract, kwargs: dict[str, Any]) -> Any:
        """Run one implementation of a *sync* hook; None if it raised or returned a wrong type."""
        try:
            result = impl.function(*[kwargs[a] for a in impl.argnames])
            if inspect.isawaitable(result):
                if hasattr(result, "close"):
                    result.close()
                raise TypeError(f"{contract.name} is a sync hook: it must not return an awaitable")
        except Exception as exc:
            self._failed(impl.plugin_name, contract.name, exc)
            return None
        return self._accepted(impl, contract, result)

    def _sync_contract(self, name: str, kwargs: dict[str, Any] | None = None) -> HookContract:
        contract = self.contract(name, kwargs)
        if not contract.sync:
            # A core bug, not a plugin's: the awaitables of async implementations would be dropped.
            raise TypeError(f"{name} may return an awaitable: call it with `await hooks.call(...)`")
        return contract

    def call_sync(self, name: str, /, **kwargs: Any) -> Any:
        """Call *sync* hook ``name`` here and now; each implementation isolated.

        Returns the list of accepted results, or for a *firstresult* hook the
        first one (None if none). ``name`` is positional-only: hooks may have
        an argument called ``name`` (``meshd_kms_provider``).
        """
        contract = self._sync_contract(name, kwargs)
        results = []
        for impl in self._impls(name):
            result = self._run_sync(impl, contract, kwargs)
            if result is not None:
                if contract.firstresult:
                    return result
                results.append(result)
        return None if contract.firstresult else results

    async def call(self, name: str, /, **kwargs: Any) -> Any:
        """Call hook ``name``, awaiting awaitable results; each implementation isolated.

        A *sync* hook called this way keeps its rules: an awaitable result is an error.
        """
        contract = self.contract(name, kwargs)
        if contract.sync:
            return self.call_sync(name, **kwargs)
        results = []
        for impl in self._impls(name):
            try:
                result = impl.function(*[kwargs[a] for a in impl.argnames])
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                self._failed(impl.plugin_name, name, exc)
                continue
            result = self._accepted(impl, contract, result)
            if result is not None:
                if contract.firstresult:
                    return result
                results.append(result)
        return None if contract.firstresult else results

    # ------------------------------------------------------------ configuration

    def config_models(self) -> dict[str, type[BaseModel]]:
        models: dict[str, type[BaseModel]] = {}
        for result in self.call_sync("meshd_config_models"):
            for section, model in result.items():
                if section in models:
                    self.log.error("config section %r is claimed by two plugins; keeping the first", section)
                    continue
                models[section] = model
        # An installed plugin left unloaded keeps its section (by convention named after it) valid as written.
        for name in sorted(self.blocked & set(installed_plugins())):
            models.setdefault(name, DisabledSection)
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
        return cast("str | None", self.call_sync("meshd_decrypt_secret", config=config, value=value, hooks=self))

    def cli_commands(self, subparsers: Any, t: Any) -> None:
        self.call_sync("meshd_cli_commands", subparsers=subparsers, t=t)

    # ------------------------------------------------------------ lifecycle

    async def startup(self, daemon: Daemon) -> None:
        await self.call("meshd_startup", daemon=daemon)

    def services(self, daemon: Daemon) -> list[tuple[str, Service]]:
        """``(plugin name, service)`` pairs from every plugin."""
        out: list[tuple[str, Service]] = []
        contract = self._sync_contract("meshd_services")
        for impl in self._impls("meshd_services"):
            result = self._run_sync(impl, contract, {"daemon": daemon})
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

    def not_ready(self, daemon: Daemon) -> list[str]:
        return [key for result in self.call_sync("meshd_not_ready", daemon=daemon) for key in result]

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

    def probe_result(self, daemon: Daemon, probe: str, kind: str, ok: bool, latency_ms: float, at: float) -> None:
        self.call_sync("meshd_probe_result", daemon=daemon, probe=probe, kind=kind, ok=ok,
                       latency_ms=latency_ms, at=at)

    async def region_health_changed(self, daemon: Daemon, report: HealthReport,
                                    previous: HealthReport | None) -> None:
        await self.call("meshd_region_health_changed", daemon=daemon, report=report, previous=previous)

    async def member_changed(self, daemon: Daemon, member: Member, previous: Member | None) -> None:
        await self.call("meshd_member_changed", daemon=daemon, member=member, previous=previous)

    async def failover_vote(self, daemon: Daemon, proposal: Proposal) -> list[Veto]:
        return cast("list[Veto]", await self.call("meshd_failover_vote", daemon=daemon, proposal=proposal))

    async def failover_committed(self, daemon: Daemon, decision: Decision) -> None:
        await self.call("meshd_failover_committed", daemon=daemon, decision=decision)

    async def region_fenced(self, daemon: Daemon, fenced: bool, reason: str) -> None:
        await self.call("meshd_region_fenced", daemon=daemon, fenced=fenced, reason=reason)

    def route_filter(self, daemon: Daemon | None, request: Any, candidates: Sequence[Any]) -> list[Any]:
        """Apply every filter in turn; a filter can only remove candidates."""
        kept = list(candidates)
        contract = self._sync_contract("meshd_route_filter")
        for impl in self._impls("meshd_route_filter"):
            kwargs = {"daemon": daemon, "request": request, "candidates": tuple(kept)}
            result = self._run_sync(impl, contract, kwargs)
            if result is not None:
                kept = [c for c in kept if c in result]
        return kept

    def kms_provider(self, name: str, config: dict[str, Any]) -> KMSProvider | None:
        return cast("KMSProvider | None", self.call_sync("meshd_kms_provider", name=name, config=config))

    def keyring(self, daemon: Daemon, purpose: str) -> DataKeyring | None:
        return cast("DataKeyring | None", self.call_sync("meshd_keyring", daemon=daemon, purpose=purpose))

    async def key_rotated(self, daemon: Daemon, metadata: dict[str, Any]) -> None:
        await self.call("meshd_key_rotated", daemon=daemon, metadata=metadata)

    async def alert(self, daemon: Daemon, alert: Alert) -> None:
        await self.call("meshd_alert", daemon=daemon, alert=alert)

    async def notify(self, daemon: Daemon, notification: Notification) -> DeliveryResult | None:
        return cast("DeliveryResult | None", await self.call("meshd_notify", daemon=daemon, notification=notification))
