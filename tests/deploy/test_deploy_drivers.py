"""The builtin traffic drivers against the real thing: HAProxy's Runtime API, a command in its process group."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from haproxy_lab import Client, HAProxy, Version

from meshd.deploydriver import DriverError, TrafficStep
from meshd_plugins.deploy import CommandDriver, HAProxyDriver, judge, parse_stat
from meshd_plugins.deploy.pipeline import Analysis

pytestmark = pytest.mark.anyio


@pytest.fixture
def lb(tmp_path: Path) -> Iterator[tuple[HAProxy, Version, Version]]:
    stable, canary = Version("stable"), Version("canary", error_rate=0.1)
    proxy = HAProxy(tmp_path / "haproxy", stable, canary)
    try:
        yield proxy, stable, canary
    finally:
        proxy.stop()
        stable.close()
        canary.close()


def step(weight: int, action: str = "step") -> TrafficStep:
    return TrafficStep("api", "eu-west-1", "v2", weight, "r1", 0, action)


def driver_for(proxy: HAProxy, **extra: object) -> HAProxyDriver:
    return HAProxyDriver.build({"socket": str(proxy.socket), "backend": "api", **extra})


@pytest.mark.parametrize("weight", [10])  # every step: bench/deploy_bench.py
async def test_weights_give_the_canary_its_share_within_2_points(lb: tuple[HAProxy, Version, Version],
                                                                 weight: int) -> None:
    proxy, _, _ = lb
    await driver_for(proxy).apply(step(weight))
    assert proxy.weights() == {"stable": 100 - weight, "canary": weight}
    client = Client(proxy.port)
    try:
        served = client.share(2000)
    finally:
        client.close()
    assert abs(100 * served["canary"] / 2000 - weight) <= 2, served


async def test_rollback_sends_everything_to_stable_and_drains_the_canary(
        lb: tuple[HAProxy, Version, Version]) -> None:
    proxy, _, _ = lb
    driver = driver_for(proxy)
    await driver.apply(step(50))
    await driver.apply(step(0, "rollback"))
    assert proxy.weights() == {"stable": 100, "canary": 0}
    assert "DRAIN" in next(line for line in proxy.admin("show stat").splitlines() if line.startswith("api,canary"))
    client = Client(proxy.port)
    try:
        assert client.share(200) == {"stable": 200}
    finally:
        client.close()


async def test_stats_count_each_server_and_its_5xx(lb: tuple[HAProxy, Version, Version]) -> None:
    proxy, _, _ = lb
    driver = driver_for(proxy)
    await driver.apply(step(50))
    before = await driver.stats()
    client = Client(proxy.port)
    try:
        statuses = [client.get() for _ in range(400)]
    finally:
        client.close()
    after = await driver.stats()
    canary_requests = sum(1 for v, _ in statuses if v == "canary")
    canary_errors = sum(1 for v, s in statuses if v == "canary" and s == 500)
    assert after.canary.requests - before.canary.requests == canary_requests
    assert after.canary.errors_5xx - before.canary.errors_5xx == canary_errors == canary_requests // 10
    assert after.stable.errors_5xx == 0
    check = judge(before.canary, after.canary, Analysis(min_requests=50))
    expected = 100 * (canary_requests - canary_errors) / canary_requests
    assert check.verdict == "fail" and f"success rate {expected:.2f} % below 99 %" == check.reason


async def test_an_unreachable_admin_socket_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.sock"
    driver = HAProxyDriver.build({"socket": str(missing), "backend": "api"})
    with pytest.raises(DriverError, match=f"HAProxy admin socket {missing} is unreachable"):
        await driver.apply(step(5))
    with pytest.raises(DriverError, match="unreachable"):
        await driver.stats()


async def test_an_unknown_server_is_named(lb: tuple[HAProxy, Version, Version]) -> None:
    proxy, _, _ = lb
    driver = driver_for(proxy, canary="green")
    with pytest.raises(DriverError, match=r"for server api/green failed"):
        await driver.apply(step(5))
    with pytest.raises(DriverError, match=r"no server api/green in 'show stat' \(servers of api: .*canary"):
        await driver.stats()


def test_bad_driver_settings_name_the_setting() -> None:
    with pytest.raises(ValueError, match="haproxy driver: socket: Field required"):
        HAProxyDriver.build({"backend": "api"})
    with pytest.raises(ValueError, match="command driver: argv"):
        CommandDriver.build({"argv": []})


def test_show_stat_that_is_not_csv_is_an_error() -> None:
    with pytest.raises(DriverError, match="not its CSV"):
        parse_stat("Unknown command\n", "api")


async def test_the_command_gets_the_step_as_json_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "step.json"
    driver = CommandDriver.build({"argv": [sys.executable, "-c",
                                           f"import sys; open({str(out)!r}, 'w').write(sys.stdin.read())"]})
    await driver.apply(step(25))
    assert json.loads(out.read_text()) == {"service": "api", "region": "eu-west-1", "version": "v2",
                                           "canary_weight": 25, "rollout_id": "r1", "step": 0, "action": "step"}


async def test_a_failing_command_is_an_error_with_its_stderr() -> None:
    driver = CommandDriver.build({"argv": [sys.executable, "-c", "import sys; sys.exit('lb said no')"]})
    with pytest.raises(DriverError, match="exited 1 .*lb said no"):
        await driver.apply(step(5))


async def test_a_command_past_its_timeout_is_killed_with_its_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # sh starts in milliseconds, so the pids are written long before the 1 s timeout even on a loaded machine.
    script = f"sleep 60 & echo $$ $! > {pids}; wait"
    driver = CommandDriver.build({"argv": ["/bin/sh", "-c", script], "timeout": "1s"})
    with pytest.raises(DriverError, match="killed after 1 s"):
        await driver.apply(step(5))
    for pid in map(int, pids.read_text().split()):
        with pytest.raises(ProcessLookupError):
            _reap_or_signal(pid)


def _reap_or_signal(pid: int) -> None:
    # The grandchild is not ours to reap: once killed it is a zombie of the (dead) command, then of init.
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None
    if state == "Z":
        raise ProcessLookupError(pid)
    os.kill(pid, 0)
