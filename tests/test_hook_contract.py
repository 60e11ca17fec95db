"""The hook contract: how each hook is called is read from its spec, and the docs say the same."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import pluggy
import pytest
from prometheus_client.registry import Collector

from meshd import HealthCheck, Veto, hookimpl, hookspecs
from meshd.daemon import Daemon
from meshd.hookcontract import conforms, read_contract
from meshd.kms import DataKeyring, KMSProvider
from meshd.memtransport import MemoryNetwork
from meshd.plugins import Hooks, PluginRejected, new_plugin_manager
from meshd.testing import BUILTIN_PLUGINS, write_federation

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "plugin-guide.md"
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("meshd_"))
MARKERS = ("sync", "firstresult")


def spec_contract(module: Any, name: str) -> Any:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(module)
    spec = getattr(pm.hook, name).spec
    return read_contract(name, spec.function, spec.opts)


def marker_mismatches(name: str, docstring: str, contract: Any, where: str) -> list[str]:
    """The *sync*/*firstresult* markers of ``docstring``'s first paragraph that disagree with ``contract``."""
    first = docstring.strip().split("\n\n")[0]
    said = {m for m in MARKERS if f"*{m}*" in first}
    declared = {m for m in MARKERS if getattr(contract, m)}
    return [f"{name}: {where} {'says' if m in said else 'does not say'} *{m}*, but the spec "
            f"{'does not declare' if m in said else 'declares'} it" for m in sorted(said ^ declared)]


def guide_paragraph(hook: str) -> str:
    text = GUIDE.read_text()
    match = re.search(rf"^#+\s+{hook}\s*\n\n(.*?)(?:\n\n|\Z)", text, re.M | re.S)
    assert match, f"{hook} has no heading in the plugin guide"
    return match.group(1)


@pytest.mark.parametrize("hook", HOOKS)
def test_the_docstring_markers_match_the_declarations(hook: str) -> None:
    contract = spec_contract(hookspecs, hook)
    assert marker_mismatches(hook, getattr(hookspecs, hook).__doc__ or "", contract, "the docstring") == []


@pytest.mark.parametrize("hook", HOOKS)
def test_the_plugin_guide_markers_match_the_declarations(hook: str) -> None:
    contract = spec_contract(hookspecs, hook)
    assert marker_mismatches(hook, guide_paragraph(hook), contract, "docs/plugin-guide.md") == []


def test_the_marker_check_catches_a_disagreement() -> None:
    class Specs:
        @hookspecs.hookspec
        def meshd_undeclared(self) -> str | None:
            """Says firstresult but is not declared so. *sync*, *firstresult*"""

        @hookspecs.hookspec(firstresult=True)
        def meshd_async_said_sync(self) -> Awaitable[None] | None:
            """Returns an awaitable but claims to be sync. *sync*, *firstresult*"""

    undeclared = spec_contract(Specs, "meshd_undeclared")
    assert marker_mismatches("meshd_undeclared", Specs.meshd_undeclared.__doc__, undeclared, "the docstring") == [
        "meshd_undeclared: the docstring says *firstresult*, but the spec does not declare it"]
    said_sync = spec_contract(Specs, "meshd_async_said_sync")
    assert marker_mismatches("meshd_async_said_sync", Specs.meshd_async_said_sync.__doc__, said_sync, "x") == [
        "meshd_async_said_sync: x says *sync*, but the spec does not declare it"]


def test_decrypt_secret_is_declared_firstresult() -> None:
    assert spec_contract(hookspecs, "meshd_decrypt_secret").firstresult


# ---------------------------------------------------------------- result types


class Keyring:
    def encrypt(self, plaintext: bytes, context: Mapping[str, str]) -> str:
        return ""

    def decrypt(self, ciphertext: str, context: Mapping[str, str]) -> bytes:
        return b""

    def blind_index(self, value: bytes) -> str:
        return ""


class Vault(KMSProvider):
    name = "vault"

    def wrap(self, plaintext_key: bytes, context: dict[str, str]) -> bytes:
        return plaintext_key

    def unwrap(self, wrapped_key: bytes, context: dict[str, str]) -> bytes:
        return wrapped_key


class DuckCollector:
    def collect(self) -> list[Any]:
        return []


@pytest.mark.parametrize(("value", "annotation", "ok"), [
    (Veto("freeze"), Veto | None, True),
    (True, Veto | None, False),
    (["a.yaml"], Sequence[str], True),
    ("a.yaml", Sequence[str], False),  # a string is a sequence of strings, but not what was meant
    ([HealthCheck("bus", True)], Sequence[HealthCheck], True),
    ([HealthCheck("bus", True), "ok"], Sequence[HealthCheck], False),
    ({"greeter": HealthCheck}, dict[str, type], True),
    ({"greeter": HealthCheck("x", True)}, dict[str, type], False),
    ({"greeter": Veto}, dict[str, type[HealthCheck]], False),
    (Keyring(), DataKeyring, True),  # a Protocol: structural
    (object(), DataKeyring, False),
    ([DuckCollector()], Sequence[Collector], True),  # prometheus takes any object with collect()
    ([object()], Sequence[Collector], False),
    ({"a": 1}, dict[str, Any], True),
])
def test_results_are_checked_against_the_annotation(value: Any, annotation: Any, ok: bool) -> None:
    assert conforms(value, annotation) is ok


def test_every_hook_has_a_contract_and_async_hooks_say_awaitable() -> None:
    hooks = Hooks(new_plugin_manager())
    contracts = {name: hooks.contract(name) for name in HOOKS}
    assert not contracts["meshd_failover_vote"].sync and contracts["meshd_route_filter"].sync
    assert contracts["meshd_services"].sync  # the daemon never awaited it; now the docs say so
    assert contracts["meshd_failover_vote"].declared == "Veto | Awaitable[Veto | None] | None"


class WrongTypes:
    @hookimpl
    def meshd_health_checks(self) -> Any:
        return "all good"

    @hookimpl
    async def meshd_status(self) -> Any:
        return ["not", "a", "dict"]

    @hookimpl
    def meshd_kms_provider(self, name: str) -> Any:
        return f"provider {name}"


class RightTypes:
    @hookimpl
    def meshd_health_checks(self) -> Any:
        return [HealthCheck("right", True)]

    @hookimpl
    def meshd_kms_provider(self) -> Any:
        return Vault()


def test_a_wrong_result_is_logged_counted_and_the_next_implementation_answers(
        caplog: pytest.LogCaptureFixture) -> None:
    from meshd.metrics import Metrics

    hooks = Hooks(new_plugin_manager(), Metrics())
    hooks.pm.register(RightTypes(), name="right")
    hooks.pm.register(WrongTypes(), name="wrong")  # registered last, so called first
    assert [c.name for c in hooks.health_checks(None)] == ["right"]  # type: ignore[arg-type]
    provider = hooks.kms_provider("vault", {})  # firstresult: the wrong answer does not stop the call
    assert isinstance(provider, Vault)
    assert hooks.metrics.value("plugin_errors_total", plugin="wrong", hook="meshd_health_checks") == 1
    assert hooks.metrics.value("plugin_errors_total", plugin="wrong", hook="meshd_kms_provider") == 1
    assert ("plugin wrong returned a str from meshd_health_checks, which expects Sequence[HealthCheck] | None; "
            "ignored") in caplog.text
    assert "provider vault" not in caplog.text  # what came back is named by type, never shown


@pytest.mark.anyio
async def test_an_async_result_is_checked_once_awaited(caplog: pytest.LogCaptureFixture) -> None:
    from meshd.metrics import Metrics

    hooks = Hooks(new_plugin_manager(), Metrics())
    hooks.pm.register(WrongTypes(), name="wrong")
    assert await hooks.call("meshd_status", daemon=None) == []
    assert hooks.metrics.value("plugin_errors_total", plugin="wrong", hook="meshd_status") == 1
    assert "plugin wrong returned a list from meshd_status, which expects dict[str, Any]" in caplog.text


def test_an_async_hook_cannot_be_called_synchronously() -> None:
    hooks = Hooks(new_plugin_manager())
    with pytest.raises(TypeError, match="meshd_startup may return an awaitable"):
        hooks.call_sync("meshd_startup", daemon=None)


def test_a_caller_cannot_override_firstresult() -> None:
    hooks = Hooks(new_plugin_manager())
    with pytest.raises(TypeError, match="firstresult is declared by the hook's spec"):
        hooks.call_sync("meshd_health_checks", firstresult=True, daemon=None)


# ---------------------------------------------------------------- hook wrappers


class NewStyleWrapper:
    @hookimpl(wrapper=True)
    def meshd_status(self) -> Any:
        result = yield
        return result

    @hookimpl
    def meshd_health_checks(self) -> Any:
        return [HealthCheck("wrapped-plugin", False, "never registered")]


class OldStyleWrapper:
    @hookimpl(hookwrapper=True)
    def meshd_member_changed(self) -> Any:
        yield


@pytest.mark.parametrize(("plugin", "hook", "kind"), [
    (NewStyleWrapper, "meshd_status", "wrapper"),
    (OldStyleWrapper, "meshd_member_changed", "hookwrapper"),
])
def test_a_hook_wrapper_is_refused_at_registration(plugin: type, hook: str, kind: str) -> None:
    pm = new_plugin_manager()
    with pytest.raises(PluginRejected, match=rf"plugin wrapped: {hook} is a {kind}=True implementation"):
        pm.register(plugin(), name="wrapped")
    assert pm.get_plugin("wrapped") is None and not getattr(pm.hook, hook).get_hookimpls()


def test_a_blocked_plugin_with_a_wrapper_is_just_blocked() -> None:
    pm = new_plugin_manager()
    pm.set_blocked("wrapped")
    assert pm.register(NewStyleWrapper(), name="wrapped") is None


def write_dist(root: Path, name: str, module: str, source: str) -> None:
    """An installed distribution (dist-info + module) that registers ``name`` in the meshd entry-point group."""
    dist = root / f"{module}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[meshd]\n{name} = {module}:Plugin\n")
    (root / f"{module}.py").write_text(source)


def test_an_installed_plugin_with_a_wrapper_is_refused_and_reported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    write_dist(tmp_path, "wrapping", "meshd_test_wrapping_plugin", (
        "from meshd import hookimpl\n\n"
        "class Plugin:\n"
        "    @hookimpl(hookwrapper=True)\n"
        "    def meshd_startup(self):\n"
        "        yield\n"))
    monkeypatch.syspath_prepend(str(tmp_path))
    with caplog.at_level(logging.ERROR):
        hooks = Hooks.load()
    assert hooks.load_errors == ["wrapping"]
    assert "wrapping" not in hooks.plugin_names()
    assert set(BUILTIN_PLUGINS) <= set(hooks.plugin_names())
    assert ("plugin wrapping (meshd_test_wrapping_plugin:Plugin) failed to load: PluginRejected: plugin wrapping: "
            "meshd_startup is a hookwrapper=True implementation") in caplog.text


@pytest.fixture
async def daemon_with_a_wrapper(tmp_path: Path) -> AsyncIterator[Daemon]:
    configs = write_federation(tmp_path, ["eu-west-1", "us-east-1"], "nats://127.0.0.1:1")
    hooks = Hooks.load(blocked=BUILTIN_PLUGINS, extra=[("wrapped", NewStyleWrapper())])
    d = Daemon(hooks.load_config(configs["eu-west-1"]), hooks, transport=MemoryNetwork().transport("eu-west-1"))
    async with anyio.create_task_group() as tg:
        await tg.start(d.run)
        yield d
        d.stop()


@pytest.mark.anyio
async def test_the_daemon_runs_without_a_refused_plugin_and_counts_it(daemon_with_a_wrapper: Daemon) -> None:
    d = daemon_with_a_wrapper
    assert d.state == "ready" and "wrapped" not in (await d.status())["plugins"]
    assert d.metrics.value("plugin_load_errors_total", plugin="wrapped") == 1
    assert d._healthz(None).status == 200  # type: ignore[arg-type]  # its failing check never registered
