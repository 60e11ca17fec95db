"""Shared fixtures: real nats-server processes on free ports, federations, in-process daemons.

Tests that need NATS start a real nats-server; when none is installed they
fail (they are never skipped): ``make test`` installs a pinned one.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from meshd.bootstrap import init_federation
from meshd.config import LoadedConfig
from meshd.daemon import Daemon
from meshd.natsserver import NatsCluster, NatsServer, find_nats_server
from meshd.plugins import Hooks
from meshd.testing import LocalFederation, default_regions_file, deep_merge

ROOT = Path(__file__).resolve().parent.parent
BUILTIN_PLUGINS = ("health", "membership", "failover", "routing", "alerts", "keys", "metering")
"""Block these for tests of the core alone."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def nats_binary() -> str:
    # Not a skip: a missing server is a broken test environment.
    return find_nats_server()


@pytest.fixture
def nats_server(tmp_path: Path, nats_binary: str) -> Iterator[NatsServer]:
    """A single-node nats-server with JetStream and no auth."""
    server = NatsServer(tmp_path / "nats", binary=nats_binary).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_cluster(tmp_path: Path, nats_binary: str) -> Iterator[NatsCluster]:
    """A 3-node JetStream cluster on loopback, no auth."""
    cluster = NatsCluster(tmp_path / "cluster", size=3)
    for node in cluster.nodes:
        node.binary = nats_binary
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def local_federation(tmp_path: Path) -> Iterator[Callable[..., LocalFederation]]:
    """Factory: ``local_federation(regions=[...], **kw)`` starts real daemon processes; all stopped at teardown."""
    made: list[LocalFederation] = []

    def make(*, daemons: bool = True, **kwargs: Any) -> LocalFederation:
        fed = LocalFederation(tmp_path / f"fed{len(made)}", **kwargs)
        made.append(fed)
        fed.start(daemons=daemons)
        return fed

    try:
        yield make
    finally:
        for fed in made:
            fed.stop()


def write_federation(tmp_path: Path, regions: Sequence[str], nats_url: str, *, federation: str = "test",
                     patch: dict[str, Any] | None = None) -> dict[str, Path]:
    """``meshd init`` for ``regions`` (from etc/region_map.yaml), without NATS auth; config paths by region."""
    import yaml

    source = default_regions_file()
    assert source is not None
    raw = yaml.safe_load(source.read_text())
    raw["regions"] = {r: raw["regions"][r] for r in regions}
    regions_file = tmp_path / "regions.yaml"
    regions_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    result = init_federation(federation=federation, regions_file=regions_file, nats_url=nats_url,
                             out=tmp_path / "federation", http_base_port=0, force=True)
    for path in result.configs.values():
        data = yaml.safe_load(path.read_text())
        data["nats"] = {"servers": [nats_url]}  # the test server has no auth
        data["http"] = {"port": 0}
        path.write_text(yaml.safe_dump(deep_merge(data, patch or {}), sort_keys=False))
    return result.configs


@contextlib.asynccontextmanager
async def running_daemons(configs: dict[str, Path], *, extra_plugins: Sequence[tuple[str, object]] = (),
                          blocked: Sequence[str] = ()) -> AsyncIterator[dict[str, Daemon]]:
    """Start in-process daemons for ``configs`` and stop them at exit."""
    daemons: dict[str, Daemon] = {}
    async with anyio.create_task_group() as tg:
        for region, path in configs.items():
            hooks = Hooks.load(blocked=blocked, extra=extra_plugins)
            config: LoadedConfig = hooks.load_config(path)
            daemon = Daemon(config, hooks)
            daemons[region] = daemon
            await tg.start(daemon.run)
        try:
            yield daemons
        finally:
            for daemon in daemons.values():
                daemon.stop()
