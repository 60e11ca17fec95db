"""``meshd deploy``: start, status, pause, resume, promote, abort, history against a daemon on a real nats-server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from meshd.cli import main
from meshd.natsserver import free_port
from meshd.testing import deep_merge, running_daemons, until, write_federation

from .rolloutlab import Lab, deploy_patch, write_pipeline

pytestmark = [pytest.mark.anyio, pytest.mark.nats]

REGION = "eu-west-1"


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``meshd ARGV`` in a worker thread (the daemon answers it from this event loop)."""
    capsys.readouterr()
    try:
        code = await anyio.to_thread.run_sync(main, list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


async def test_the_deploy_commands(tmp_path: Path, nats_server: Any, labs: dict[str, Lab],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    lab = labs[REGION]
    lab.start_traffic()
    pipeline = write_pipeline(tmp_path / "region_pipeline.yaml", [[REGION]], {REGION: lab.driver()}, bake="1h",
                              deadline="1h")
    configs = write_federation(tmp_path, [REGION], nats_server.url,
                               patch=deep_merge(deploy_patch(pipeline), {"http": {"port": free_port()}}))
    config = str(configs[REGION])
    async with running_daemons(configs, blocked=("partners", "billing", "metering", "audit", "routing")):
        async def status() -> dict[str, Any]:
            code, out, err = await cli(capsys, "deploy", "status", "api", "--json", "--config", config)
            assert code == 0, err
            docs: list[dict[str, Any]] = json.loads(out)
            return docs[0] if docs else {}

        code, out, err = await cli(capsys, "deploy", "start", "api", "--version", "v2", "--region", REGION,
                                   "--config", config)
        assert code == 0, err
        assert "started in eu-west-1" in out
        code, _, err = await cli(capsys, "deploy", "start", "api", "--version", "v3", "--region", REGION,
                                 "--config", config)
        assert code == 2 and "one at a time" in err
        code, _, err = await cli(capsys, "deploy", "start", "web", "--version", "v3", "--region", REGION,
                                 "--config", config)
        assert code == 2 and f"service 'web' is not in {pipeline}" in err
        code, _, err = await cli(capsys, "deploy", "start", "api", "--version", "v3", "--config", config)
        assert code == 2 and "--region" in err  # one of --region / --pipeline is required

        await until(lambda: _weight(lab) == 5, what="the first step in HAProxy")
        assert (await cli(capsys, "deploy", "pause", "api", "--config", config))[0] == 0
        assert (await status())["state"] == "paused"
        code, _, err = await cli(capsys, "deploy", "start", "api", "--version", "v3", "--region", REGION,
                                 "--config", config)
        assert code == 2 and "is paused" in err
        assert (await cli(capsys, "deploy", "resume", "api", "--config", config))[0] == 0
        assert (await status())["state"] == "running"

        # The bake is an hour: only promote moves it on, and only once a check has passed.
        assert (await cli(capsys, "deploy", "promote", "api", "--config", config))[0] == 0
        await until(lambda: _weight(lab) == 10, timeout=30, what="the second step after promote")
        doc = await status()
        assert doc["weights"] == {REGION: 10} and doc["state"] == "running"

        code, out, err = await cli(capsys, "deploy", "abort", "api", "--config", config)
        assert code == 0, err
        assert "aborted" in out
        await until(lambda: _weight(lab) == 0, what="traffic back on stable")
        code, out, _ = await cli(capsys, "deploy", "status", "--watch", "--config", config)
        assert code == 0 and "aborted" in out
        code, _, err = await cli(capsys, "deploy", "resume", "api", "--config", config)
        assert code == 2 and "is aborted" in err

        code, out, _ = await cli(capsys, "deploy", "history", "api", "--json", "--config", config)
        history = json.loads(out)
        assert [(r["version"], r["state"]) for r in history] == [("v2", "aborted")]
        kinds = [e["kind"] for e in history[0]["log"]]
        assert kinds[:2] == ["started", "lease"] and "pause" in kinds and "abort" in kinds
        assert kinds[-1] == "restored"


def _weight(lab: Lab) -> int:
    return lab.proxy.weights()["canary"]
