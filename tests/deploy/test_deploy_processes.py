"""Rollouts across real ``meshd run`` processes: a SIGKILLed driver resumes, a region that stays dead stops it."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from meshd.testing import LocalFederation
from meshd_plugins.deploy import verify_chain

from .rolloutlab import Lab, deploy_patch, write_pipeline

pytestmark = [pytest.mark.nats, pytest.mark.slow]

REGION, PEERS = "eu-west-1", ["eu-central-1"]


def current(fed: LocalFederation, observer: str) -> dict[str, Any] | None:
    status, doc = fed.http(observer, "/v1/deploy?service=api")
    if status != 200 or not doc["rollouts"]:
        return None
    rollout: dict[str, Any] = doc["rollouts"][0]
    return rollout


def start(fed: LocalFederation, version: str) -> str:
    status, doc = fed.http(REGION, "/v1/deploy/start", method="POST", admin=True, timeout=10,
                           body={"service": "api", "version": version, "region": REGION})
    assert status == 200, doc
    rollout_id: str = doc["rollout"]["id"]
    return rollout_id


def test_a_killed_driver_resumes_every_step_once_and_a_dead_region_stops_its_rollout(
        tmp_path: Path, labs: dict[str, Lab]) -> None:
    lab = labs[REGION]
    traffic = lab.start_traffic()
    pipeline = write_pipeline(tmp_path / "region_pipeline.yaml", [[REGION]], {REGION: lab.driver()}, bake="300ms")
    patch = deploy_patch(pipeline)
    patch["deploy"]["lease"] = "15s"  # longer than a restart takes on a loaded machine (10 s seen)
    # Failover is not what this test is about: a committed failover (rightly) ends a rollout at once.
    patch["plugins"] = {"disabled": ["failover", "fencing", "partners", "billing", "metering", "audit", "routing"]}
    with LocalFederation(tmp_path / "fed", regions=[REGION, *PEERS], config=patch) as fed:
        first = start(fed, "v2")

        # SIGKILL the driving daemon in the middle of the ladder, restart it at once (systemd's Restart=).
        fed.wait_for(lambda: (r := current(fed, PEERS[0])) and r["regions"][REGION]["step"] >= 2, timeout=60,
                     what="the third step")
        fed.kill(REGION)
        fed.start_daemon(REGION)
        done = fed.wait_for(lambda: (r := current(fed, PEERS[0])) and not r["active"] and r, timeout=90,
                            what="the rollout to finish")
        assert done["id"] == first and done["state"] == "promoted", [(e["kind"], e["data"]) for e in done["log"]]
        log = done["log"]
        assert verify_chain(log) is None
        assert [e["data"]["weight"] for e in log if e["kind"] == "step"] == [5, 10, 25, 50, 100]
        assert [e["data"]["weight"] for e in log if e["kind"] == "applied"] == [5, 10, 25, 50, 100]
        holders = [e["data"]["holder"] for e in log if e["kind"] == "lease"]
        assert len(holders) == 2 and holders[0] != holders[1], holders  # the restarted daemon took it back
        assert lab.proxy.weights() == {"stable": 0, "canary": 100}

        # The next version: its region dies for good at 10 %. A short lease (reloaded: it applies from the
        # next renewal) keeps the wait for the peers short.
        fed.patch_config(REGION, {"deploy": {"lease": "2s"}})
        fed.signal(REGION, signal.SIGHUP)
        fed.wait_for(lambda: ((fed.status(REGION) or {}).get("deploy") or {}).get("lease") == 2.0,
                     what="the reloaded lease")
        lab.proxy.admin("set weight api/stable 100")
        lab.proxy.admin("set weight api/canary 0")
        start(fed, "v3")
        fed.wait_for(lambda: lab.proxy.weights()["canary"] == 10, timeout=60, what="the second step in HAProxy")
        fed.wait_for(lambda: (r := current(fed, PEERS[0])) and r["regions"][REGION]["lease_until"] - time.time() <= 2,
                     what="a lease renewed at the reloaded length")
        fed.kill(REGION)
        ended = fed.wait_for(lambda: (r := current(fed, PEERS[0])) and not r["active"] and r, timeout=60,
                             what="the peers to stop the rollout")
        assert ended["state"] == "failed" and ended["reason"] == f"region {REGION} is dead"
        assert ended["log"][-1]["kind"] == "failed" and ended["log"][-1]["data"]["restored"] is True
        assert lab.proxy.weights() == {"stable": 100, "canary": 0}
        with traffic.lock:
            before = Counter(traffic.counts)
        fed.wait_for(lambda: sum(traffic.counts.values()) > sum(before.values()) + 200, what="more traffic")
        with traffic.lock:
            after = Counter(traffic.counts)
        assert {k: after[k] - before[k] for k in after if k[0] == "canary" and after[k] > before[k]} == {}
