"""Fixtures of the metering tests: a tenant directory, meters, in-process daemons, a stand-in keyring.

The ledger's encryption is tested against
:class:`metering_keyring.SeededKeyring` (bench/metering_keyring.py), a small but real
DataKeyring, so that these tests do not depend on the keys plugin.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from metering_keyring import SeededKeyring, SeededKeyringPlugin

from meshd import hookimpl
from meshd.testing import deep_merge, running_daemons, write_federation

TENANTS = """\
tenants:
  acme-eu: {residency: EU, home: eu-west-1}
  bistro-fr: {residency: EU}
  globex-us: {residency: US, home: us-east-1}
"""

METERS = {
    "api_calls": {"kind": "SUM", "unit": "requests"},
    "requests": {"kind": "COUNT"},
    "peak_gb": {"kind": "MAX"},
    "users": {"kind": "UNIQUE_COUNT"},
    "plan_seats": {"kind": "LATEST"},
}


@pytest.fixture
def fake_keyring() -> type[SeededKeyring]:
    return SeededKeyring


@pytest.fixture
def tenants_file(tmp_path: Path) -> Path:
    path = tmp_path / "tenants.yaml"
    path.write_text(TENANTS)
    return path


REGIONS = ["eu-west-1", "eu-central-1", "us-east-1"]
OTHER_PLUGINS = ["health", "membership", "failover", "routing", "alerts", "keys"]
"""Blocked in these tests: only the core and metering run (the others are tested elsewhere)."""


@pytest.fixture
def metering_configs(tmp_path: Path, tenants_file: Path) -> Callable[..., dict[str, Path]]:
    """Factory: ``meshd init`` configs of REGIONS with the test meters and tenant directory.

    Tests start the daemons they need; a region whose daemon is not started is "down".
    """

    def make(nats_url: str, metering: Mapping[str, Any] | None = None) -> dict[str, Path]:
        section = deep_merge({"meters": METERS}, metering or {})
        return write_federation(tmp_path, REGIONS, nats_url,
                                patch={"metering": section, "plugins": {"disabled": OTHER_PLUGINS}})

    return make


@pytest.fixture
def federation_config() -> Callable[..., dict[str, Any]]:
    """Factory: the config patch of a LocalFederation that meters with the test meters."""

    def make(**metering: Any) -> dict[str, Any]:
        return {"metering": deep_merge({"meters": METERS}, metering), "plugins": {"disabled": OTHER_PLUGINS}}

    return make


@pytest.fixture
def start_daemons() -> Callable[..., Any]:
    """``async with start_daemons(configs, keyring=False, plugins=[(name, cls)], also=["keys"]) as daemons``.

    In-process daemons of ``configs`` (the core, metering, ``plugins`` and the builtin plugins named in
    ``also``), returned once metering consumes.
    """

    @contextlib.asynccontextmanager
    async def start(configs: Mapping[str, Path], *, keyring: bool = False, plugins: Sequence[tuple[str, Any]] = (),
                    also: Sequence[str] = ()) -> AsyncIterator[dict[str, Any]]:
        extra = [("testkeyring", SeededKeyringPlugin)] if keyring else []
        extra += list(plugins)
        blocked = [p for p in OTHER_PLUGINS if p not in also]
        async with running_daemons(dict(configs), extra_plugins=extra, blocked=blocked) as daemons:
            with anyio.fail_after(20):
                for daemon in daemons.values():
                    while not runtime(daemon).ingestor or not runtime(daemon).ingestor.running:
                        await anyio.sleep(0.02)
            yield daemons

    return start


def runtime(daemon: Any) -> Any:
    """The metering Runtime of an in-process daemon."""
    return daemon.hooks.pm.get_plugin("metering").runtime


@pytest.fixture(name="runtime")
def runtime_fixture() -> Callable[[Any], Any]:
    return runtime


class AlertRecorder:
    """Stands in for the alerts plugin: remembers every alert raised or resolved."""

    def __init__(self) -> None:
        self.alerts: list[Any] = []

    @hookimpl
    def meshd_alert(self, daemon: Any, alert: Any) -> None:
        self.alerts.append(alert)

    def seen(self, name: str, status: str = "firing") -> list[Any]:
        return [a for a in self.alerts if a.labels.get("alertname") == name and a.status == status]


@pytest.fixture
def alert_recorder() -> type[AlertRecorder]:
    return AlertRecorder
