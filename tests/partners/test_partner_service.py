"""The API listener as a daemon service: ready with the daemon, stopped within the shutdown budget."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from meshd.daemon import SHUTDOWN_BUDGET
from meshd.testing import running_daemons, until

from .conftest import OTHER_PLUGINS, partner_configs

pytestmark = [pytest.mark.anyio, pytest.mark.nats]


async def test_serves_once_ready_and_stops_within_the_budget_with_open_connections(tmp_path: Path,
                                                                                   nats_server) -> None:
    configs = partner_configs(tmp_path, nats_server.url)
    stopped_in = None
    async with running_daemons({"eu-west-1": configs["eu-west-1"]}, blocked=OTHER_PLUGINS) as daemons:
        daemon = daemons["eu-west-1"]
        rt = daemon.hooks.pm.get_plugin("partners").runtime
        assert daemon.ready and rt.port  # READY came after the listener accepted connections
        status = await daemon.status()
        assert status["partners"]["state"] == "serving" and status["partners"]["port"] == rt.port
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{rt.port}")
        idle = socket.create_connection(("127.0.0.1", rt.port))  # a keep-alive connection left open
        assert (await client.get("/v1/openapi.json")).status_code == 200
        began = time.monotonic()
        daemon.stop()
        await until(lambda: daemon.state == "stopped", SHUTDOWN_BUDGET + 1, "the daemon stopped")
        stopped_in = time.monotonic() - began
        await client.aclose()
        idle.close()
    assert stopped_in is not None and stopped_in < SHUTDOWN_BUDGET + 1
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", rt.port), timeout=1).close()
