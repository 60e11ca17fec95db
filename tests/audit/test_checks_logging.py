"""logging.deadman and logging.receivers: the alerts plugin's pipeline, with a real HTTP receiver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from alerts_receiver import RecordingReceiver, drained, wait_received

from meshd.natsserver import NatsServer
from meshd.testing import BUILTIN_PLUGINS, until

from .conftest import daemons, run_check, without_secrets

pytestmark = pytest.mark.anyio
ONLY_ALERTS = tuple(p for p in BUILTIN_PLUGINS if p != "alerts")
FAST = {"dedup": {"lease": 2, "poll": 0.1, "fence_grace": 3, "stagger": 0.5},
        "delivery": {"backoff_initial": 0.1, "backoff_max": 0.5, "rate_limited_min": 1}}


@pytest.fixture
def receiver() -> Iterator[RecordingReceiver]:
    with RecordingReceiver() as rx:
        yield rx


def write_routes(tmp_path: Path, receivers: list[dict[str, Any]]) -> None:
    routes = {"route": {"receiver": "nowhere", "group_by": ["alertname", "region"], "group_wait": "0s",
                        "group_interval": "500ms", "repeat_interval": "1h",
                        "routes": [{"matchers": ['alertname="DeadMansSwitch"'], "receiver": "heartbeat"}]},
              "receivers": [{"name": "nowhere"}, *receivers]}
    (tmp_path / "federation").mkdir(exist_ok=True)
    (tmp_path / "federation" / "alert_routes.yaml").write_text(yaml.safe_dump(routes, sort_keys=False))


async def test_deadman_reached_its_receiver_and_no_receiver_is_broken(tmp_path: Path, nats_server: NatsServer,
                                                                      receiver: RecordingReceiver) -> None:
    write_routes(tmp_path, [{"name": "heartbeat", "urls": [receiver.json_url("/beat")]}])
    async with daemons(tmp_path, nats_server.url, regions=["eu-west-1"], blocked=ONLY_ALERTS,
                       patch={"alerts": FAST}) as running:
        await wait_received(receiver, lambda got: got[:1], what="the dead man's switch")
        await drained(running)
        daemon = running["eu-west-1"]
        deadman = await run_check("logging.deadman", daemon)
        receivers = await run_check("logging.receivers", daemon)
    assert deadman.status == "pass", deadman.detail
    assert "reached heartbeat" in deadman.detail and deadman.evidence["receivers"] == ["heartbeat"]
    assert deadman.evidence["max_age_s"] == 2 * 3600 + 60
    assert receivers.status == "pass", receivers.detail


async def test_a_disabled_deadman_fails(tmp_path: Path, nats_server: NatsServer, receiver: RecordingReceiver) -> None:
    write_routes(tmp_path, [{"name": "heartbeat", "urls": [receiver.json_url("/beat")]}])
    async with daemons(tmp_path, nats_server.url, regions=["eu-west-1"], blocked=ONLY_ALERTS,
                       patch={"alerts": {**FAST, "deadman": {"enabled": False}}}) as running:
        result = await run_check("logging.deadman", running["eu-west-1"])
    assert result.status == "fail" and "alerts.deadman.enabled is false" in result.detail


async def test_deadman_into_a_dead_receiver_fails(tmp_path: Path, nats_server: NatsServer) -> None:
    down = RecordingReceiver()  # never started: every delivery is refused
    token = "Sup3rSecretTok3nValue"
    write_routes(tmp_path, [{"name": "heartbeat", "urls": [f"json://bot:{token}@127.0.0.1:{down.port}/beat"]}])
    async with daemons(tmp_path, nats_server.url, regions=["eu-west-1"], blocked=ONLY_ALERTS,
                       patch={"alerts": {**FAST, "delivery": {**FAST["delivery"], "broken_after": 0.2}}}) as running:
        daemon = running["eu-west-1"]
        rt = daemon.hooks.pm.get_plugin("alerts").runtime
        await until(lambda: "heartbeat" in rt.delivery.broken, what="the receiver to be broken")
        deadman = await run_check("logging.deadman", daemon)
        receivers = await run_check("logging.receivers", daemon)
    assert deadman.status == "fail" and "never reached its receiver (heartbeat)" in deadman.detail
    assert receivers.status == "fail" and receivers.detail.startswith("broken alert receivers: heartbeat (")
    assert without_secrets(receivers, token) and without_secrets(deadman, token)


async def test_log_only_alerts_fail_the_deadman(tmp_path: Path, nats_server: NatsServer) -> None:
    write_routes(tmp_path, [{"name": "heartbeat"}])
    async with daemons(tmp_path, nats_server.url, regions=["eu-west-1"], blocked=ONLY_ALERTS,
                       patch={"alerts": FAST}) as running:
        result = await run_check("logging.deadman", running["eu-west-1"])
    assert result.status == "fail" and "alerts are only logged" in result.detail
