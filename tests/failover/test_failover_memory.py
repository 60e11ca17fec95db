"""The failover protocol with seven in-process daemons on the in-memory transport.

Fast: membership is synthetic (the test sets each daemon's view), the bus
and the KV bucket are :mod:`meshd.memtransport`. The same protocol runs on
real nats-server in test_failover_nats.py and in the chaos suite.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from meshd_plugins.failover.records import Record, encode_record, record_body, slot_key

pytestmark = pytest.mark.anyio

FAST = {"failover": {"vote_timeout": "1s", "hold_down": "0.3s", "flap_window": "1h"}}


def audit(fed: Any, region: str, kind: str | None = None) -> list[dict[str, Any]]:
    path = fed.daemons[region].state_dir / "failover" / "audit.log"
    entries = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [e for e in entries if kind is None or e["kind"] == kind]


async def test_a_dead_region_fails_over_once_to_its_dr_pair(make_federation: Any) -> None:
    async with make_federation(patch=FAST) as fed:
        await fed.start_all()
        await fed.see("eu-west-1", "dead")
        for region in fed.regions:
            await fed.until(lambda r=region: fed.decided(r, "eu-west-1"), what=f"{region} applied")
        slots = await fed.kv_slots("eu-west-1")
        assert slots == {"eu-west-1": [1]}
        for region in fed.regions:
            [decision] = fed.decisions(region)
            assert decision["action"] == "failover" and decision["term"] == 1
            assert decision["target"] == "eu-central-1" and decision["tier"] == "pair"
            assert len(decision["voters"]) >= 4 and "eu-west-1" not in decision["voters"]
            await fed.until(lambda r=region: len(fed.recorder(r).decisions) == 1)
            assert fed.recorder(region).decisions[0].target == "eu-central-1"
        # Every daemon applied the very same record bytes.
        digests = {audit(fed, r, "decision")[0]["data"]["digest"] for r in fed.regions}
        assert len(digests) == 1
        alerts = [a for a in fed.recorder("us-east-1").alerts if a.status == "firing"]
        assert [a.labels["alertname"] for a in alerts] == ["FailoverCommitted"]
        assert alerts[0].labels == {"alertname": "FailoverCommitted", "severity": "critical",
                                    "region": "eu-west-1", "target": "eu-central-1"}
        assert "eu-central-1" in alerts[0].annotations["summary"]


async def test_a_region_without_a_peer_in_its_jurisdiction_gets_a_no_target_decision(make_federation: Any) -> None:
    async with make_federation(patch=FAST) as fed:
        await fed.start_all()
        await fed.see("ca-central-1", "dead")
        await fed.until(lambda: fed.decided("us-east-1", "ca-central-1"))
        [decision] = fed.decisions("us-east-1")
        assert decision["target"] is None and decision["tier"] == "none"
        await fed.until(lambda: fed.recorder("us-east-1").alerts)
        alert = fed.recorder("us-east-1").alerts[0]
        assert alert.labels["alertname"] == "FailoverNoTarget" and alert.labels["severity"] == "critical"
        assert alert.labels["region"] == "ca-central-1"


async def test_the_minority_side_never_commits(make_federation: Any) -> None:
    async with make_federation(patch=FAST) as fed:
        await fed.start_all()
        minority = ["us-east-1", "us-west-2", "eu-central-1"]
        cut = [r for r in fed.regions if r not in minority]
        await fed.cut(cut)
        # Before their membership notices the partition, the three still on the bus see only
        # eu-west-1 dead: they vote, term after term, and three votes never make a quorum.
        await fed.see("eu-west-1", "dead", observers=minority)
        await fed.until(lambda: fed.engine("us-east-1").ledgers["eu-west-1"].filled >= 2, timeout=20,
                        what="two abandoned terms")
        for region in minority:
            assert fed.decisions(region) == []
        votes = audit(fed, "us-east-1", "vote")
        assert len(votes) >= 2 and all(v["data"]["vote"] == "yes" for v in votes)
        records = fed.engine("us-east-1").ledgers["eu-west-1"].records
        assert all(r is not None and r.outcome == "abandoned" for r in records.values())
        # Once they see the whole partition (four dead), they do not even vote: no quorum in sight.
        for region in cut:
            await fed.see(region, "dead", observers=minority)
        before = len(audit(fed, "us-east-1", "vote"))
        # It keeps weighing eu-west-1 in fresh terms and finds no reason to vote: no quorum alive in sight.
        await fed.weighed("us-east-1", "eu-west-1", "no_reason", times=10)
        assert len(audit(fed, "us-east-1", "vote")) <= before + 1  # at most one already under way
        # The cut-off side never voted: it is isolated, and it did consider it.
        for region in cut:
            if region != "eu-west-1":
                await fed.weighed(region, "eu-west-1", "not_now")
            assert audit(fed, region, "vote") == []


async def test_an_isolated_or_semi_detached_daemon_never_votes(make_federation: Any) -> None:
    async with make_federation(patch=FAST) as fed:
        await fed.start_all()
        # us-east-1 is connected but sees four regions dead: it cannot see a quorum alive.
        for region in ["eu-west-1", "eu-central-1", "ca-central-1", "me-south-1"]:
            await fed.see(region, "dead", observers=["us-east-1"])
        await fed.cut(["us-west-2"])
        await fed.see("eu-west-1", "dead", observers=["us-west-2"])
        await fed.weighed("us-east-1", "eu-west-1", "no_reason")
        await fed.weighed("us-west-2", "eu-west-1", "not_now")
        assert audit(fed, "us-east-1", "vote") == []
        assert audit(fed, "us-west-2", "vote") == []
        assert fed.daemons["us-west-2"].hooks.pm.get_plugin("failover").meshd_status(
            fed.daemons["us-west-2"])["failover"]["isolated"] is True


async def test_one_vote_per_region_and_term_survives_a_restart(make_federation: Any) -> None:
    async with make_federation(patch={"failover": {"vote_timeout": "30s"}}) as fed:
        await fed.start_all()
        await fed.see("eu-west-1", "dead", observers=["us-east-1", "us-west-2"])
        await fed.until(lambda: fed.engine("us-west-2").ledgers["eu-west-1"].tallies.get(1, {}).get("us-east-1"))
        await fed.stop("us-east-1")
        await fed.start("us-east-1")
        await fed.see("eu-west-1", "dead", observers=["us-east-1"])
        # It sees eu-west-1 dead again, and the vote it read back from its audit log holds it back.
        await fed.weighed("us-east-1", "eu-west-1", "not_now")
        votes = [v for v in audit(fed, "us-east-1", "vote") if v["data"]["region"] == "eu-west-1"]
        assert [(v["data"]["term"], v["data"]["vote"]) for v in votes] == [(1, "yes")]
        # Its earlier vote still counts: two more make the quorum of four.
        await fed.see("eu-west-1", "dead", observers=["eu-central-1", "ca-central-1"])
        await fed.until(lambda: fed.decided("us-west-2", "eu-west-1"))
        assert "us-east-1" in fed.decisions("us-west-2")[0]["voters"]


async def test_vetoes_vote_no_and_the_term_is_abandoned(make_federation: Any) -> None:
    async with make_federation(patch={"failover": {"vote_timeout": "30s"}}) as fed:
        await fed.start_all()
        vetoing = ["us-east-1", "us-west-2", "eu-central-1", "ca-central-1"]
        for region in vetoing:
            fed.plugin(region, "vetoer").reason = "change freeze"
        await fed.see("eu-west-1", "dead")
        # Four no votes out of seven: quorum 4 is out of reach long before the 30 s timeout.
        await fed.until(lambda: fed.engine("me-south-1").ledgers["eu-west-1"].filled >= 1)
        record = fed.engine("me-south-1").ledgers["eu-west-1"].records[1]
        assert record is not None and record.outcome == "abandoned" and "voted no" in record.reason
        assert fed.decisions("me-south-1") == []
        no = [v for v in audit(fed, "us-east-1", "vote") if v["data"]["vote"] == "no"]
        assert no and no[0]["data"]["reason"] == "change freeze"
        proposal = fed.plugin("us-east-1", "vetoer").seen[0]
        assert (proposal.region, proposal.term, proposal.action, proposal.target) == \
            ("eu-west-1", 1, "failover", "eu-central-1")
        # The next term opens at once, is vetoed too, and then the federation backs off instead of
        # burning a slot per tick while the veto stands.
        await fed.until(lambda: fed.engine("me-south-1").ledgers["eu-west-1"].filled >= 2)
        # Every daemon still sees eu-west-1 dead; they hold back (20 ticks of 50 ms) rather than vote.
        for region in ("me-south-1", "us-east-1"):
            await fed.weighed(region, "eu-west-1", "not_now", times=20)
        assert fed.engine("me-south-1").ledgers["eu-west-1"].filled == 2
        assert fed.engine("me-south-1").backoff("eu-west-1") > 20


async def test_failback_after_hold_down_and_a_flapping_region_stays_failed_over(make_federation: Any) -> None:
    async with make_federation(patch=FAST) as fed:
        await fed.start_all()
        await fed.see("eu-west-1", "dead")
        await fed.until(lambda: fed.decided("us-east-1", "eu-west-1", 1))
        await fed.see("eu-west-1", "alive")
        await fed.until(lambda: fed.decided("us-east-1", "eu-west-1", 2), what="automatic failback")
        assert [d["action"] for d in fed.decisions("us-east-1")] == ["failover", "failback"]
        # It fails again within the flap window: failed over, flagged, and no automatic failback.
        await fed.see("eu-west-1", "dead")
        await fed.until(lambda: fed.decided("us-east-1", "eu-west-1", 3))
        assert fed.decisions("us-east-1")[-1]["flapping"] is True
        await fed.see("eu-west-1", "alive")
        await fed.past_hold_down("eu-west-1")
        assert len(fed.decisions("us-east-1")) == 3
        assert fed.engine("us-east-1").ledgers["eu-west-1"].failed_over
        # An operator brings it back, still by quorum.
        assert fed.engine("us-east-1").request_problem("eu-west-1", "failback", "it flapped; fixed now") is None
        await fed.engine("us-east-1").request("eu-west-1", "failback", "it flapped; fixed now")
        await fed.until(lambda: fed.decided("ap-southeast-1", "eu-west-1", 4))
        last = fed.decisions("ap-southeast-1")[-1]
        assert last["action"] == "failback" and last["manual"] is True and len(last["voters"]) >= 4


async def test_manual_failback_mode_waits_for_an_operator(make_federation: Any) -> None:
    async with make_federation(patch={"failover": {"failback": "manual", "hold_down": "0.1s"}}) as fed:
        await fed.start_all()
        await fed.see("us-west-2", "dead")
        await fed.until(lambda: fed.decided("us-east-1", "us-west-2"))
        await fed.see("us-west-2", "alive")
        await fed.past_hold_down("us-west-2")
        assert len(fed.decisions("us-east-1")) == 1
        engine = fed.engine("eu-west-1")
        assert engine.request_problem("us-west-2", "failover", "r") == ("already_failed_over", {"region": "us-west-2"})
        assert engine.request_problem("nowhere", "failover", "r")[0] == "unknown_region"
        await engine.request("us-west-2", "failback", "back from maintenance")
        await fed.until(lambda: fed.decided("us-east-1", "us-west-2", 2))


async def test_a_daemon_that_starts_later_applies_earlier_decisions(make_federation: Any) -> None:
    async with make_federation(patch=FAST) as fed:
        for region in fed.regions[:-1]:
            await fed.start(region)
        await fed.see("us-west-2", "dead")
        await fed.until(lambda: fed.decided("us-east-1", "us-west-2"))
        late = fed.regions[-1]
        await fed.start(late)
        await fed.until(lambda: fed.recorder(late).decisions)
        [decision] = fed.recorder(late).decisions
        assert (decision.region, decision.term, decision.target) == ("us-west-2", 1, "us-east-1")
        assert decision.extra["replay"] is True
        # A failover still in force is raised again; its alert was not lost with the restart.
        await fed.engine(late).applier.replay_done.wait()
        assert fed.recorder(late).alerts[0].labels["alertname"] == "FailoverCommitted"


async def test_a_daemon_that_starts_after_a_failback_does_not_page_for_the_failover_it_replays(
        make_federation: Any) -> None:
    async with make_federation(patch=FAST) as fed:
        for region in fed.regions[:-1]:
            await fed.start(region)
        await fed.see("us-west-2", "dead")
        await fed.until(lambda: fed.decided("us-east-1", "us-west-2"))
        await fed.see("us-west-2", "alive")
        await fed.until(lambda: fed.decided("us-east-1", "us-west-2", 2), what="automatic failback")
        late = fed.regions[-1]
        await fed.start(late)
        await fed.engine(late).applier.replay_done.wait()
        assert [(d.action, d.extra["replay"]) for d in fed.recorder(late).decisions] == \
            [("failover", True), ("failback", True)]
        # The incident is over: raising its FailoverCommitted again would page for it a second time.
        assert fed.recorder(late).alerts == []


async def test_a_forged_record_in_the_bucket_is_ignored_and_the_next_term_decides(make_federation: Any) -> None:
    async with make_federation(patch=FAST) as fed:
        await fed.start_all()
        engine = fed.engine("us-east-1")
        # A record signed by one region, claiming a quorum it does not carry.
        forged = Record("committed", "eu-west-1", 1, "failover", "eu-central-1", "us-east-1", 1.0, quorum=4)
        data, headers = fed.daemons["us-east-1"].bus.seal("decision", record_body(forged, [], 7))
        await engine.kv.create(slot_key("eu-west-1", 1), encode_record(data, headers))
        await fed.see("eu-west-1", "dead")
        await fed.until(lambda: fed.decided("us-west-2", "eu-west-1"))
        [decision] = fed.decisions("us-west-2")
        assert decision["term"] == 2
        assert fed.daemons["us-west-2"].metrics.value("failover_invalid_total", kind="record") == 1


async def test_a_stale_daemon_cannot_commit_an_old_term(make_federation: Any) -> None:
    async with make_federation(patch=FAST) as fed:
        await fed.start_all()
        await fed.cut(["me-south-1"])
        await fed.see("eu-west-1", "dead")
        await fed.until(lambda: fed.decided("us-east-1", "eu-west-1"))
        stale = fed.engine("me-south-1")
        assert stale.ledgers["eu-west-1"].filled == 0
        await fed.heal(["me-south-1"])
        # Its own attempt at slot 1, with its old idea of the term, must lose to what is there.
        fake = Record("committed", "eu-west-1", 1, "failover", "eu-central-1", "me-south-1", 2.0, quorum=4)
        await stale.committer.create(fake, [])
        await fed.until(lambda: fed.decided("me-south-1", "eu-west-1"))
        assert fed.decisions("me-south-1")[0]["committed_by"] != "me-south-1"
        assert fed.daemons["me-south-1"].metrics.value("failover_commit_attempts_total", result="exists") >= 1


async def test_after_a_frozen_event_loop_a_daemon_waits_before_voting_a_failover(make_federation: Any) -> None:
    import time

    async with make_federation(regions=["us-east-1", "us-west-2", "eu-west-1"],
                               patch={"failover": {"rejoin_grace": "1.5s"}}) as fed:
        await fed.start_all()
        await fed.weighed("us-east-1", "eu-west-1", "no_reason")  # its loop runs
        time.sleep(1.6)  # noqa: ASYNC251 - freezes every daemon's event loop, as SIGSTOP would
        await fed.until(lambda: time.monotonic() - fed.engine("us-east-1").connected_since < 1.0)
        grace_ends = time.time() + 1.5 - (time.monotonic() - fed.engine("us-east-1").connected_since)
        await fed.see("eu-west-1", "dead")
        await fed.until(lambda: fed.decided("us-east-1", "eu-west-1"), what="vote after the grace")
        # The view may be stale right after the freeze: no daemon voted before its grace was over.
        for region in ("us-east-1", "us-west-2"):
            [vote] = audit(fed, region, "vote")
            assert vote["ts"] >= grace_ends - 0.1, f"{region} voted {grace_ends - vote['ts']:.2f}s early"


async def test_a_vote_counts_only_while_its_voter_renews_it(make_federation: Any) -> None:
    async with make_federation(patch={"failover": {"vote_timeout": "30s"}}) as fed:
        await fed.start_all()
        # Three vote, then one of them is cut off and another changes its mind.
        await fed.see("ap-southeast-1", "dead", observers=["us-east-1", "us-west-2", "eu-west-1"])
        await fed.until(lambda: len(fed.engine("me-south-1").ledgers["ap-southeast-1"].tallies.get(1, {})) == 3)
        await fed.cut(["us-east-1"])
        await fed.see("ap-southeast-1", "alive", observers=["us-west-2"])
        engine = fed.engine("me-south-1")
        ledger = engine.ledgers["ap-southeast-1"]

        def live() -> set[str]:
            return {v.voter for v in engine.committer.live_votes(ledger, 1, "failover")}

        await fed.until(lambda: live() == {"eu-west-1"}, what="the two silent votes lapse")
        # Two fresh voters make five votes cast, but only three live ones: no quorum now.
        await fed.see("ap-southeast-1", "dead", observers=["eu-central-1", "ca-central-1"])
        await fed.until(lambda: live() == {"eu-west-1", "eu-central-1", "ca-central-1"}, what="three live votes")
        for region in ("me-south-1", "eu-central-1", "ca-central-1"):
            await fed.weighed(region, "ap-southeast-1", "not_now" if region != "me-south-1" else "no_reason")
        assert not fed.decided("me-south-1", "ap-southeast-1") and len(ledger.tallies[1]) == 5
        # The cut-off voter comes back and renews its vote: four live votes decide.
        await fed.heal(["us-east-1"])
        await fed.until(lambda: fed.decided("me-south-1", "ap-southeast-1"))
        assert set(fed.decisions("me-south-1")[0]["voters"]) == {"us-east-1", "eu-west-1", "eu-central-1",
                                                                  "ca-central-1"}


async def test_a_daemon_counts_its_own_vote_only_once_renewed_after_its_bus_came_back(make_federation: Any) -> None:
    # Behind a silent cut a daemon keeps renewing its own vote into nowhere; when the bus comes back
    # those copies must not count, or it commits on a vote no peer received (chaos seed 48).
    async with make_federation(patch={"failover": {"vote_timeout": "30s", "lease": "10s"}}) as fed:
        await fed.start_all()
        await fed.see("ap-southeast-1", "dead", observers=["us-east-1"])
        engine = fed.engine("us-east-1")
        ledger = engine.ledgers["ap-southeast-1"]

        def live() -> set[str]:
            return {v.voter for v in engine.committer.live_votes(ledger, 1, "failover")}

        await fed.until(lambda: live() == {"us-east-1"}, what="its own vote counts")
        before = engine.connected_since
        await fed.cut(["us-east-1"])
        await fed.heal(["us-east-1"])
        assert engine.connected_since > before
        assert ledger.seen[1]["us-east-1"] < engine.connected_since  # still inside the 10 s lease
        assert "us-east-1" not in live()
        await fed.until(lambda: live() == {"us-east-1"}, what="a copy sent since the bus came back")
        assert ledger.seen[1]["us-east-1"] >= engine.connected_since
