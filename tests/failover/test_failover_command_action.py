"""contrib/failover-command: a real command gets each decision on stdin, and is killed at its timeout."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "contrib" / "failover-command"))

from meshd_failover_command import CommandActionPlugin  # noqa: E402

pytestmark = pytest.mark.anyio
REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ca-central-1"]


def script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "action.py"
    path.write_text("import json, os, sys, time\n" + textwrap.dedent(body))
    return str(path)


async def test_the_command_gets_the_decision_as_json_on_stdin(make_federation: Any, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    out.mkdir()
    action = script(tmp_path, f"""
        decision = json.load(sys.stdin)
        name = decision["observer"] + "-" + str(decision["term"])
        with open(os.path.join({str(out)!r}, name), "w") as f:
            json.dump({{"decision": decision, "env": os.environ["MESHD_ACTION"] + " " + os.environ["MESHD_TARGET"]}}, f)
    """)
    patch = {"failover_command": {"command": [sys.executable, action], "timeout": "20s"}}
    async with make_federation(regions=REGIONS, patch=patch,
                               extra_plugins=[("failover-command", CommandActionPlugin)]) as fed:
        await fed.start_all()
        await fed.see("us-west-2", "dead")
        alive = [r for r in REGIONS if r != "us-west-2"]
        await fed.until(lambda: all((out / f"{r}-1").exists() for r in alive), timeout=30, what="every run")
        run = json.loads((out / "eu-west-1-1").read_text())
        assert run["decision"]["region"] == "us-west-2" and run["decision"]["target"] == "us-east-1"
        assert run["decision"]["action"] == "failover" and run["decision"]["federation"] == "test"
        assert run["env"] == "failover us-east-1"
        daemon = fed.daemons["eu-west-1"]
        await fed.until(lambda: daemon.metrics.value("failover_command_runs_total", result="ok") == 1)


async def test_a_command_past_its_timeout_is_killed_and_later_decisions_still_run(make_federation: Any,
                                                                                 tmp_path: Path) -> None:
    marker = tmp_path / "done"
    action = script(tmp_path, f"""
        decision = json.load(sys.stdin)
        if decision["region"] == "us-west-2":
            time.sleep(60)
        open({str(marker)!r} + "-" + decision["observer"], "w").close()
        sys.exit(3 if decision["region"] == "ca-central-1" else 0)
    """)
    patch = {"failover_command": {"command": [sys.executable, action], "timeout": "0.5s"}}
    async with make_federation(regions=REGIONS, patch=patch,
                               extra_plugins=[("failover-command", CommandActionPlugin)]) as fed:
        await fed.start_all()
        daemon = fed.daemons["eu-west-1"]
        await fed.see("us-west-2", "dead")
        await fed.until(lambda: daemon.metrics.value("failover_command_runs_total", result="timeout") == 1,
                        timeout=30)
        await fed.see("ca-central-1", "dead")
        await fed.until(lambda: daemon.metrics.value("failover_command_runs_total", result="failed") == 1,
                        timeout=30)
        assert Path(f"{marker}-eu-west-1").exists()  # the second decision's run did happen
        runs = fed.plugin("eu-west-1", "failover-command").runs
        assert [(r["region"], r["result"], r["exit"]) for r in runs] == [("us-west-2", "timeout", None),
                                                                        ("ca-central-1", "failed", 3)]
        assert runs[0]["seconds"] < 10  # killed, not waited for
        assert daemon.state == "ready"


def test_check_config_rejects_a_command_that_is_not_executable(tmp_path: Path) -> None:
    from meshd.config import ConfigError
    from meshd.plugins import Hooks
    from meshd.testing import write_federation

    configs = write_federation(tmp_path, ["eu-west-1", "eu-central-1"], "nats://127.0.0.1:4222",
                               patch={"failover_command": {"command": [str(tmp_path / "nope.sh")]}})
    hooks = Hooks.load(extra=[("failover-command", CommandActionPlugin())])
    with pytest.raises(ConfigError) as err:
        hooks.load_config(configs["eu-west-1"])
    [issue] = [i for i in err.value.issues if i.keypath[0] == "failover_command"]
    assert issue.keypath == ("failover_command", "command", 0) and "not an executable" in issue.message
