"""Shared fixtures: real nats-server processes on free ports, federations, in-process daemons.

Tests that need NATS start a real nats-server; when none is installed they
fail (they are never skipped): ``make test`` installs a pinned one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from meshd.natsserver import NatsCluster, NatsServer, find_nats_server
from meshd.testing import BUILTIN_PLUGINS, LocalFederation  # noqa: F401  (re-exported for tests)

ROOT = Path(__file__).resolve().parent.parent


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
