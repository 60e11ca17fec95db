"""`meshd run` as a real process: systemd notify, SIGTERM, SIGHUP, a bus that is not there yet."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from meshd.testing import LocalFederation, NotifySocket

REGIONS = ["eu-west-1", "eu-central-1"]


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    s = NotifySocket(tmp_path / "notify.sock")
    yield s
    s.close()


@pytest.fixture
def fed(tmp_path: Path) -> Iterator[LocalFederation]:
    f = LocalFederation(tmp_path / "fed", regions=REGIONS)
    f.start(daemons=False)
    yield f
    f.stop()


def test_ready_watchdog_and_a_graceful_sigterm(fed: LocalFederation, notify: NotifySocket) -> None:
    import anyio
    import nats  # a raw subscriber to see the leave announcement

    leaves: list[bytes] = []

    async def watch_and_stop() -> float:
        nc = await nats.connect(fed.servers[0].url, user="eu-central-1",
                                password=(fed.dir / "secrets" / "eu-central-1.nats-password").read_text().strip(),
                                inbox_prefix="_INBOX.eu-central-1")
        got = anyio.Event()

        async def on_leave(msg: object) -> None:
            leaves.append(msg.data)  # type: ignore[attr-defined]
            got.set()

        await nc.subscribe("meshd.test.leave.eu-west-1", cb=on_leave)
        await nc.flush()
        began = time.monotonic()
        fed.signal("eu-west-1", signal.SIGTERM)
        with anyio.fail_after(10):
            await got.wait()
        code = await anyio.to_thread.run_sync(fed.procs["eu-west-1"].wait, 10)
        elapsed = time.monotonic() - began
        assert code == 0
        await nc.close()
        return elapsed

    fed.start_daemon("eu-west-1", wait=False,
                     extra_env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000"})
    messages = notify.wait_for("READY=1")
    assert fed.status("eu-west-1")["state"] == "ready"  # READY only once really ready
    notify.wait_for("WATCHDOG=1")
    pings_before = sum(m.count("WATCHDOG=1") for m in notify.messages)
    notify.messages.clear()
    notify.wait_for("WATCHDOG=1")  # and it keeps pinging
    assert pings_before >= 1

    elapsed = anyio.run(watch_and_stop)
    assert elapsed < 5.0, f"SIGTERM took {elapsed:.2f}s"
    assert b'"type":"leave"' in leaves[0]
    notify.wait_for("STOPPING=1")
    assert any(m.startswith("STATUS=") for m in messages)


def test_sighup_with_a_broken_config_keeps_the_old_one(fed: LocalFederation, notify: NotifySocket) -> None:
    fed.start_daemon("eu-central-1", extra_env={"NOTIFY_SOCKET": str(notify.path)})
    path = fed.config_path("eu-central-1")
    good = path.read_text()
    path.write_text(good + "nats: [this is not a mapping\n")
    fed.signal("eu-central-1", signal.SIGHUP)
    fed.wait_for(lambda: fed.metric("eu-central-1", "meshd_config_reloads_total", result="invalid") == 1,
                 what="the rejected reload to be counted")
    notify.wait_for("RELOADING=1")
    assert fed.status("eu-central-1")["state"] == "ready"
    assert fed.running("eu-central-1")
    assert "reload rejected" in fed.log_text("eu-central-1")

    data = yaml.safe_load(good)
    data["log"] = {"level": "debug"}
    path.write_text(yaml.safe_dump(data))
    fed.signal("eu-central-1", signal.SIGHUP)
    fed.wait_for(lambda: fed.metric("eu-central-1", "meshd_config_reloads_total", result="ok") == 1,
                 what="the good reload")
    assert fed.stop_daemon("eu-central-1") == 0


def test_no_ready_until_the_bus_is_reachable(fed: LocalFederation, notify: NotifySocket) -> None:
    server = fed.servers[0]
    server.stop()
    fed.start_daemon("eu-west-1", wait=False, extra_env={"NOTIFY_SOCKET": str(notify.path)})
    # It retries with one clear line per attempt and reports not-ready meanwhile.
    fed.wait_for(lambda: fed.log_text("eu-west-1").count("bus connect attempt") >= 2, what="two retry lines")
    code, health = fed.http("eu-west-1", "/healthz")
    assert code == 503 and health["ok"] is False
    sent = notify.drain()
    assert any("STATUS=connecting" in m for m in sent)
    assert not any("READY=1" in m.splitlines() for m in sent)
    server.start()
    notify.wait_for("READY=1")
    fed.wait_for(lambda: fed.http("eu-west-1", "/healthz")[0] == 200, what="healthz 200")
    assert fed.running("eu-west-1")


def test_reconnects_after_a_nats_server_restart(fed: LocalFederation) -> None:
    fed.start_daemon("eu-west-1")
    server = fed.servers[0]
    server.stop()
    fed.wait_for(lambda: "bus connection lost" in fed.log_text("eu-west-1"), what="the loss to be noticed")
    code, _ = fed.http("eu-west-1", "/healthz")
    assert code == 503
    server.start()
    fed.wait_for(lambda: fed.metric("eu-west-1", "meshd_bus_connected") == 1 and
                 "bus connection restored" in fed.log_text("eu-west-1"), what="reconnection")
    fed.wait_for(lambda: fed.http("eu-west-1", "/healthz")[0] == 200, what="healthz 200 again")
