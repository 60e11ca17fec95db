"""Fixtures for the alerts plugin's tests: recording HTTP receivers and small federations of in-process daemons."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from alerts_receiver import RecordingReceiver

from meshd.testing import BUILTIN_PLUGINS, write_federation

OTHER_PLUGINS = [p for p in BUILTIN_PLUGINS if p != "alerts"]
"""Blocked in these tests, so that only the alerts the test raises exist."""

FAST = {
    "dedup": {"lease": 2, "poll": 0.1, "fence_grace": 3, "stagger": 0.5},
    "delivery": {"backoff_initial": 0.1, "backoff_max": 0.5, "rate_limited_min": 1},
    "deadman": {"enabled": False},
}
"""Timing knobs for tests that are not about the defaults."""


@pytest.fixture
def receiver() -> Iterator[RecordingReceiver]:
    with RecordingReceiver() as rx:
        yield rx


@pytest.fixture
def make_receiver() -> Iterator[Callable[[], RecordingReceiver]]:
    made: list[RecordingReceiver] = []

    def make() -> RecordingReceiver:
        rx = RecordingReceiver().start()
        made.append(rx)
        return rx

    yield make
    for rx in made:
        rx.stop()


@pytest.fixture
def alerts_federation(tmp_path: Path, nats_server: Any) -> Callable[..., dict[str, Path]]:
    """``alerts_federation(regions, routes, alerts={...})``: daemon configs on the real test nats-server."""

    def make(regions: list[str], routes: dict[str, Any], alerts: dict[str, Any] | None = None) -> dict[str, Path]:
        settings = {**FAST, **(alerts or {})}
        configs = write_federation(tmp_path, regions, nats_server.url, patch={"alerts": settings})
        (tmp_path / "federation" / "alert_routes.yaml").write_text(yaml.safe_dump(routes, sort_keys=False))
        return configs

    return make


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def start_daemons() -> Callable[..., Any]:
    """``async with start_daemons(configs) as daemons``: in-process daemons with only the alerts plugin."""
    from meshd.testing import running_daemons

    def start(configs: dict[str, Path], **kwargs: Any) -> Any:
        return running_daemons(configs, blocked=OTHER_PLUGINS, **kwargs)

    return start
