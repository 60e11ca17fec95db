"""The hook contract: how each hook is called is read from its spec, and the docs say the same."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from meshd import HealthCheck, hookimpl
from meshd.daemon import Daemon
from meshd.memtransport import MemoryNetwork
from meshd.plugins import Hooks, PluginRejected, new_plugin_manager
from meshd.testing import BUILTIN_PLUGINS, write_federation


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
