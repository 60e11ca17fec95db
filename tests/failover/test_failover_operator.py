"""Operators' requests: a two-person rule for failing over a region the voters see up, a reason and the
requesters in every audit log, and no failover that strands a residency unless forced.

Seven in-process daemons on the in-memory transport, membership set by the test (see conftest.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import ROOT, SEVEN

pytestmark = pytest.mark.anyio

FAST = {"failover": {"vote_timeout": "1s", "hold_down": "0.3s", "flap_window": "1h"},
        "tenants": str(ROOT / "etc" / "tenants.yaml")}


def audit(fed: Any, region: str, kind: str) -> list[dict[str, Any]]:
    path = fed.daemons[region].state_dir / "failover" / "audit.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [e for e in map(json.loads, lines) if e["kind"] == kind]


def votes_on(fed: Any, region: str) -> list[dict[str, Any]]:
    return [v for r in fed.daemons for v in audit(fed, r, "vote") if v["data"]["region"] == region]


async def test_one_regions_request_cannot_fail_over_a_region_its_peers_see_alive(make_federation: Any) -> None:
    async with make_federation(patch=FAST) as fed:
        await fed.start_all()
        engine = fed.engine("us-east-1")
        answer = await engine.request("eu-central-1", "failover", "suspected data corruption")
        assert answer["requesters"] == ["us-east-1"] and answer["min_requesters"] == 2
        # Every daemon heard the signed request and weighed it, again and again, without voting.
        for region in fed.regions:
            await fed.weighed(region, "eu-central-1", "awaiting_operators")
        assert votes_on(fed, "eu-central-1") == []
        assert fed.decisions("eu-west-1") == []
        for region in fed.regions:
            [heard] = audit(fed, region, "request")
            assert heard["data"] == {"region": "eu-central-1", "action": "failover", "by": "us-east-1",
                                     "reason": "suspected data corruption", "force": False}
        # The same operator asking again is still one requester.
        await engine.request("eu-central-1", "failover", "really")
        await fed.weighed("eu-west-1", "eu-central-1", "awaiting_operators")
        assert votes_on(fed, "eu-central-1") == []


async def test_a_second_region_request_fails_it_over_and_the_audit_logs_name_both(make_federation: Any) -> None:
    async with make_federation(patch=FAST) as fed:
        await fed.start_all()
        await fed.engine("us-east-1").request("eu-central-1", "failover", "planned maintenance CHG-1042")
        await fed.weighed("ca-central-1", "eu-central-1", "awaiting_operators")
        await fed.engine("eu-west-1").request("eu-central-1", "failover", "confirmed, CHG-1042")
        for region in fed.regions:
            await fed.until(lambda r=region: fed.decided(r, "eu-central-1"), what=f"{region} applied")
        decision = fed.decisions("me-south-1")[0]
        assert decision["target"] == "eu-west-1" and decision["manual"] is True
        assert decision["requesters"] == ["eu-west-1", "us-east-1"]
        reasons = {"us-east-1": "planned maintenance CHG-1042", "eu-west-1": "confirmed, CHG-1042"}
        for region in fed.regions:
            [logged] = await fed.until(lambda r=region: [e["data"] for e in audit(fed, r, "decision")
                                                         if e["data"]["region"] == "eu-central-1"],
                                       what=f"{region} logged the decision")
            assert logged["requesters"] == ["eu-west-1", "us-east-1"] and logged["reasons"] == reasons
        # Every yes vote says which requests it answered, signed by its voter.
        yes = [v["data"] for v in votes_on(fed, "eu-central-1")]
        assert len(yes) >= 4 and all(v["vote"] == "yes" and v["requests"] == reasons for v in yes)
        [applied] = await fed.until(lambda: fed.recorder("us-east-1").decisions)
        assert applied.extra["requests"] == reasons
        # Alive all along, but a manual failover is never failed back automatically.
        await fed.past_hold_down("eu-central-1")
        assert len(fed.decisions("eu-west-1")) == 1


async def test_a_single_request_goes_through_when_the_voters_see_the_region_down(make_federation: Any) -> None:
    async with make_federation(patch=FAST) as fed:
        await fed.start_all()
        for observer in fed.regions:
            if observer != "eu-west-1":
                await fed.fake(observer).set("eu-west-1", "alive", health="down")
        await fed.engine("us-east-1").request("eu-west-1", "failover", "its database is down")
        await fed.until(lambda: fed.decided("us-west-2", "eu-west-1"))
        decision = fed.decisions("us-west-2")[0]
        assert decision["manual"] is True and decision["requesters"] == ["us-east-1"]
        reasons = [v["data"]["reason"] for v in votes_on(fed, "eu-west-1")]
        assert reasons and all("eu-west-1 reports health down" in r for r in reasons)


async def test_a_manual_failback_waits_for_the_hold_down(make_federation: Any) -> None:
    async with make_federation(patch={**FAST, "failover": {**FAST["failover"], "hold_down": "2s",
                                                           "failback": "manual"}}) as fed:
        await fed.start_all()
        await fed.see("us-west-2", "dead")
        await fed.until(lambda: fed.decided("us-east-1", "us-west-2"))
        await fed.see("us-west-2", "alive")
        await fed.engine("us-east-1").request("us-west-2", "failback", "back from the outage")
        # Heard at once, but no peer votes while it has been alive for less than the hold-down in
        # its view. us-west-2 itself may: its own bus connection never dropped in this test, and
        # on a slow start it has been connected for longer than the hold-down already.
        await fed.weighed("eu-west-1", "us-west-2", "awaiting_operators")
        peers = [v for r in fed.daemons if r != "us-west-2" for v in audit(fed, r, "vote")
                 if v["data"]["region"] == "us-west-2"]
        assert peers and all(v["data"]["term"] == 1 for v in peers)
        await fed.until(lambda: fed.decided("us-east-1", "us-west-2", 2), what="failback after the hold-down")
        assert fed.decisions("us-east-1")[-1]["requesters"] == ["us-east-1"]
        failback = [v for v in votes_on(fed, "us-west-2") if v["data"]["term"] == 2]
        assert failback and all("hold-down 2s" in v["data"]["reason"] for v in failback)
        assert all(float(v["data"]["reason"].split("alive for ")[1].split("s")[0]) >= 2 for v in failback)


async def test_a_failover_with_nowhere_to_go_is_refused_unless_forced(make_federation: Any) -> None:
    async with make_federation(patch=FAST) as fed:
        await fed.start_all()
        engine = fed.engine("us-east-1")
        bh = sum(1 for t in fed.daemons["us-east-1"].config.tenants.tenants.values() if t.residency == "BH")
        assert bh >= 1
        assert engine.request_problem("me-south-1", "failover", "drill") == \
            ("no_target", {"region": "me-south-1", "residencies": "BH", "tenants": bh})
        # A region with a peer in its jurisdiction has somewhere to go.
        assert engine.request_problem("eu-west-1", "failover", "drill") is None
        # Forced (by both requesters, each knowing what it does), it goes through.
        assert engine.request_problem("me-south-1", "failover", "drill", force=True) is None
        await engine.request("me-south-1", "failover", "evacuate: flooding at the site", force=True)
        await fed.engine("us-west-2").request("me-south-1", "failover", "confirmed", force=True)
        await fed.until(lambda: fed.decided("eu-west-1", "me-south-1"))
        decision = fed.decisions("eu-west-1")[0]
        assert decision["target"] is None and decision["tier"] == "none"
        [heard, _] = [e["data"] for e in audit(fed, "eu-west-1", "request")]
        assert heard["force"] is True


async def test_a_request_needs_a_reason(make_federation: Any) -> None:
    async with make_federation(regions=SEVEN[:3], patch={"failover": FAST["failover"]}) as fed:
        await fed.start_all()
        engine = fed.engine("us-east-1")
        for reason in (None, "", "   ", "x" * 501, "two\nlines"):
            assert engine.request_problem("us-west-2", "failover", reason) == ("bad_reason", {})
        # A peer's request without a reason is dropped and counted, never acted on.
        await fed.daemons["us-west-2"].bus.publish("failover", "request",
                                                   {"region": "eu-west-1", "action": "failover"})
        await fed.until(lambda: fed.daemons["us-east-1"].metrics.value("failover_invalid_total", kind="request") == 1)
        assert audit(fed, "us-east-1", "request") == []
