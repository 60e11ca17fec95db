"""A daemon that starts while NATS answers but JetStream does not: routing refuses, the failover
plugin says so once and keeps trying, and both recover when JetStream comes back."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from meshd.cli import main
from meshd.daemon import Daemon
from meshd.natsserver import NatsServer, free_port, render_config
from meshd.plugins import Hooks
from meshd.testing import BUILTIN_PLUGINS, until, write_federation

from .conftest import ROOT

pytestmark = [pytest.mark.anyio, pytest.mark.nats]
EU = ["eu-west-1", "eu-central-1"]


def metric(daemon: Daemon, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(daemon.metrics.render().decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def without_jetstream(server: NatsServer, path: Path) -> Path:
    text = render_config(name=server.name, host=server.host, port=server.port, monitor_port=server.monitor_port,
                         store_dir=server.workdir / "unused")
    path.write_text("".join(line + "\n" for line in text.splitlines() if not line.startswith("jetstream")))
    return path


async def test_routing_refuses_until_the_bucket_is_read_and_the_outage_is_logged_once(
        tmp_path: Path, nats_binary: str, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    tenants = yaml.safe_load((ROOT / "etc" / "tenants.yaml").read_text())["tenants"]
    (tmp_path / "tenants.yaml").write_text(yaml.safe_dump(
        {"tenants": {k: v for k, v in tenants.items() if v["residency"] == "EU"}}))
    server = NatsServer(tmp_path / "nats", binary=nats_binary)
    server.config_file = without_jetstream(server, tmp_path / "no-js.conf")
    server.start(wait=False)
    server.wait_healthy(jetstream=False)
    configs = write_federation(tmp_path, EU, server.url, patch={"http": {"port": free_port()},
                                                                "failover": {"tick": "0.05s"}})
    argv = ["--lang", "fr", "route", "--config", str(configs["eu-west-1"]), "--tenant", "acme-eu", "--from", "DE"]
    caplog.set_level(logging.INFO)
    hooks = Hooks.load(blocked=[p for p in BUILTIN_PLUGINS if p not in ("failover", "routing")])
    daemon = Daemon(hooks.load_config(configs["eu-west-1"]), hooks)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(daemon.run)

            def outage_lines() -> list[Any]:
                return [r for r in caplog.records if "KV bucket" in r.getMessage() and "unavailable" in r.getMessage()]

            await until(lambda: metric(daemon, "meshd_failover_kv_errors_total") >= 3, 30,
                        what="the failover plugin retrying the bucket")
            assert len(outage_lines()) == 1  # one line per state change, not one per attempt
            assert daemon.not_ready() and "failover.not_ready.decisions" in daemon.not_ready()

            code = await anyio.to_thread.run_sync(main, argv)
            _, err = capsys.readouterr()
            assert code == 1 and "décisions pas encore lues sur le bus" in err and "eu-west-1" in err, err
            assert metric(daemon, "meshd_route_requests_total", api="http", result="not_ready") == 1

            # JetStream back (same port): the plugin reads the bucket, the daemon routes again.
            server.stop()
            server.config_file = None
            server.start()
            await until(lambda: not daemon.not_ready(), 60, what="the decisions read once JetStream is back")
            code = await anyio.to_thread.run_sync(main, argv)
            out, err = capsys.readouterr()
            assert code == 0 and "eu-central-1" in out, err
            assert len(outage_lines()) == 1
            assert any("KV bucket" in r.getMessage() and "available" in r.getMessage()
                       and "unavailable" not in r.getMessage() for r in caplog.records)
            assert metric(daemon, "meshd_failover_kv_up") == 1
            daemon.stop()
    finally:
        server.stop()
