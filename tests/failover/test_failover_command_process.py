"""contrib/failover-command as ops install it: `pip install`ed beside meshd, loaded through the entry
point by real `meshd run` processes on a real nats-server, acting on a failover the real membership
and failover plugins committed after a SIGKILL."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from meshd.testing import LocalFederation

ROOT = Path(__file__).resolve().parents[2]
REGIONS = ["eu-west-1", "eu-central-1", "us-east-1"]

RECORDER = """\
import json, os, sys
decision = json.load(sys.stdin)
env = {k: v for k, v in os.environ.items() if k.startswith("MESHD_")}
name = f"{decision['observer']}.{decision['region']}.{decision['term']}.json"
with open(os.path.join(sys.argv[1], name), "x") as f:
    json.dump({"decision": decision, "env": env}, f)
"""


def test_every_survivor_runs_the_installed_command_once_for_the_committed_failover(
        tmp_path: Path, local_federation: Callable[..., LocalFederation]) -> None:
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                    str(ROOT / "contrib" / "failover-command")], check=True, timeout=300)
    recorder, runs = tmp_path / "record.py", tmp_path / "runs"
    recorder.write_text(RECORDER)
    runs.mkdir()
    dr = yaml.safe_load((ROOT / "etc" / "dr_config.yaml").read_text())
    dr["regions"] = {"eu-west-1": {"pair": "eu-central-1"}, "eu-central-1": {"pair": "eu-west-1"}, "us-east-1": {}}
    (tmp_path / "dr_config.yaml").write_text(yaml.safe_dump(dr))

    fed = local_federation(
        regions=REGIONS, shared_files=[tmp_path / "dr_config.yaml"], env={"PYTHONPATH": str(site)},
        config={"plugins": {"disabled": ["alerts", "metering", "keys"]},
                "failover_command": {"command": [sys.executable, str(recorder), str(runs)], "timeout": "10s"}})
    fed.wait_for(lambda: all(fed.member_state(o, r) == "alive" for o in REGIONS for r in REGIONS if o != r),
                 30, what="every daemon sees every region alive")
    assert "failover-command" in fed.status("us-east-1")["plugins"]

    fed.kill("eu-central-1")
    survivors = ["eu-west-1", "us-east-1"]
    recorded = fed.wait_for(lambda: (files := sorted(runs.iterdir())) and len(files) >= len(survivors) and files,
                            60, what="both survivors to run the failover command")
    assert [p.name.split(".", 1)[0] for p in recorded] == survivors  # once each, nothing from the dead region
    for path, observer in zip(recorded, survivors):
        run = json.loads(path.read_text())
        decision, env = run["decision"], run["env"]
        assert decision["action"] == "failover" and decision["region"] == "eu-central-1"
        assert decision["target"] == "eu-west-1" and decision["replay"] is False
        assert decision["observer"] == observer and decision["federation"] == fed.federation
        assert "eu-central-1" not in decision["voters"] and len(decision["voters"]) >= 2
        assert env["MESHD_REGION"] == observer and env["MESHD_ACTION"] == "failover"
        assert env["MESHD_TARGET"] == "eu-west-1" and env["MESHD_TERM"] == str(decision["term"])
        # The command wrote its file before the daemon saw it exit: wait for the daemon's record.
        [last] = fed.wait_for(lambda: [r for r in fed.status(observer)["failover_command"]["runs"]
                                       if r["region"] == "eu-central-1"], 10, what=f"{observer}'s run record")
        assert last["result"] == "ok" and last["term"] == decision["term"]
        assert fed.metric(observer, "meshd_failover_command_runs_total", result="ok") == 1
