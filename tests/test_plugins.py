"""Plugins: entry-point loading, isolation of failures, supervision, disabling, a real third-party install."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from meshd import Member, MemberState, Service, hookimpl
from meshd.daemon import Daemon
from meshd.memtransport import MemoryNetwork
from meshd.plugins import Hooks
from meshd.testing import BUILTIN_PLUGINS, LocalFederation, write_federation

ROOT = Path(__file__).resolve().parent.parent


class Boom:
    @hookimpl
    def meshd_member_changed(self, member: Member) -> None:
        raise RuntimeError("boom in member_changed")

    @hookimpl
    def meshd_status(self) -> dict[str, Any]:
        raise ValueError("boom in status")

    @hookimpl
    def meshd_health_checks(self) -> list[Any]:
        raise KeyError("boom in health")


class Good:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.runs = 0
        self.running = anyio.Event()

    @hookimpl
    def meshd_member_changed(self, member: Member) -> None:
        self.seen.append(member.region)

    @hookimpl
    def meshd_status(self) -> dict[str, Any]:
        return {"good": {"seen": self.seen}}

    @hookimpl
    def meshd_services(self) -> list[Service]:
        async def flaky(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
            self.runs += 1
            if self.runs <= 2:
                raise ConnectionError(f"flaky start #{self.runs}")
            task_status.started()
            self.running.set()
            await anyio.sleep_forever()

        return [Service("flaky", flaky, backoff_initial=0.01)]


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    configs = write_federation(tmp_path, ["eu-west-1", "us-east-1"], "nats://127.0.0.1:1")
    hooks = Hooks.load(blocked=BUILTIN_PLUGINS, extra=[("boom", Boom()), ("good", Good())])
    d = Daemon(hooks.load_config(configs["eu-west-1"]), hooks, transport=MemoryNetwork().transport("eu-west-1"))
    async with anyio.create_task_group() as tg:
        await tg.start(d.run)
        yield d
        d.stop()


@pytest.mark.anyio
async def test_a_raising_plugin_is_logged_counted_and_isolated(daemon: Daemon, caplog: pytest.LogCaptureFixture) -> None:
    good: Good = daemon.hooks.pm.get_plugin("good")
    await daemon.hooks.member_changed(daemon, Member("us-east-1", MemberState.DEAD), None)
    assert good.seen == ["us-east-1"]  # the other implementation still ran
    status = await daemon.status()
    assert status["good"] == {"seen": ["us-east-1"]} and status["state"] == "ready"
    assert daemon.metrics.value("plugin_errors_total", plugin="boom", hook="meshd_member_changed") == 1
    assert daemon.metrics.value("plugin_errors_total", plugin="boom", hook="meshd_status") == 1
    assert "plugin boom failed in meshd_member_changed: RuntimeError: boom in member_changed" in caplog.text
    response = daemon._healthz(None)  # type: ignore[arg-type]
    assert response.status == 200  # a broken health hook is not a health failure of the region


@pytest.mark.anyio
async def test_a_crashing_service_is_restarted_with_backoff(daemon: Daemon) -> None:
    good: Good = daemon.hooks.pm.get_plugin("good")
    with anyio.fail_after(10):
        await good.running.wait()
    assert good.runs == 3
    assert daemon.metrics.value("service_restarts_total", service="flaky") == 2
    assert daemon.metrics.value("service_up", service="flaky") == 1


def test_a_plugin_that_fails_to_import_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[meshd]\nbroken = no_such_module_anywhere:Plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    hooks = Hooks.load()
    assert hooks.load_errors == ["broken"]
    assert "broken" not in hooks.plugin_names()
    assert set(BUILTIN_PLUGINS) <= set(hooks.plugin_names())


def test_disable_unregisters_and_reports_unknown_names() -> None:
    hooks = Hooks.load()
    assert "routing" in hooks.plugin_names()
    unknown = hooks.disable(["routing", "no-such-plugin"])
    assert unknown == ["no-such-plugin"]
    assert "routing" not in hooks.plugin_names()


def test_the_contrib_example_plugin_installs_and_its_hooks_run(tmp_path: Path) -> None:
    """A real `pip install` of contrib/example-plugin, seen by real daemons over a real nats-server."""
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(site), str(ROOT / "contrib" / "example-plugin")], check=True, timeout=300)
    fed = LocalFederation(tmp_path / "fed", regions=["eu-west-1", "us-east-1", "ca-central-1"],
                          env={"PYTHONPATH": str(site)},
                          per_region={"eu-west-1": {"greeter": {"greeting": "dia dhuit"}},
                                      "ca-central-1": {"plugins": {"disabled": ["greeter"]}}})
    fed.start(daemons=False)
    try:
        fed.start_daemon("us-east-1")
        fed.start_daemon("ca-central-1")
        fed.start_daemon("eu-west-1")  # greets the others once it is up
        status = fed.wait_for(lambda: (s := fed.status("us-east-1")) and
                              s.get("greeter", {}).get("greetings_seen", {}).get("eu-west-1") and s,
                              what="us-east-1 to receive eu-west-1's greeting")
        assert status["greeter"]["greetings_seen"]["eu-west-1"] == "dia dhuit"
        assert "greeter" in status["plugins"]
        disabled = fed.status("ca-central-1")
        assert "greeter" not in disabled["plugins"] and "greeter" not in disabled
    finally:
        fed.stop()
