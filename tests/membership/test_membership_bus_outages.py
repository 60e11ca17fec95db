"""The bus itself fails: a nats-server restart, and one node of a NATS cluster killed."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.nats


def _settled(fed, region: str) -> bool:
    """Back from isolation, past its rejoin grace, with no suspicion pending."""
    doc = fed.status(region) or {}
    m = doc.get("membership") or {}
    return m.get("isolated") is False and m.get("grace_s") == 0 and not m.get("suspects")


def test_nats_restart_marks_no_one_dead(membership_federation) -> None:
    regions = ["us-east-1", "us-west-2", "eu-west-1"]
    fed, views = membership_federation(regions)
    server = fed.servers[0]
    server.stop()
    fed.wait_for(lambda: all(views.state(r, r) == "isolated" for r in regions), 15, what="everyone isolated")
    server.start()
    fed.wait_for(views.converged, 30, what="everyone alive again after the restart")
    fed.wait_for(lambda: all(_settled(fed, r) for r in regions), 30, what="grace over, no suspicion left")
    for observer in regions:
        assert fed.metric(observer, "meshd_membership_transitions_total", region=observer, state="isolated") >= 1
        for region in regions:
            if region != observer:
                assert views.deaths(observer, region) == 0, f"{observer} saw {region} die"


def test_daemon_whose_nats_node_dies_is_isolated_then_remerges(membership_federation) -> None:
    regions = ["us-east-1", "us-west-2", "eu-west-1"]
    # eu-west-1 knows only node 0; the others sit on nodes 1 and 2, which survive.
    fed, views = membership_federation(regions, nats_nodes=3, pin={"eu-west-1": 0, "us-east-1": 1, "us-west-2": 2})
    before = views.incarnation("us-east-1", "eu-west-1")
    fed.servers[0].kill()
    fed.wait_for(lambda: views.state("eu-west-1", "eu-west-1") == "isolated", 15, what="eu-west-1 isolated")
    fed.wait_for(lambda: views.all_see("eu-west-1", "dead", ["us-east-1", "us-west-2"]), 20,
                 what="the others mark eu-west-1 dead")
    assert views.deaths("eu-west-1", "us-east-1") == 0 and views.deaths("eu-west-1", "us-west-2") == 0
    fed.servers[0].start()
    fed.wait_for(views.converged, 30, what="re-merge once its node is back")
    assert views.incarnation("us-west-2", "eu-west-1") > before
    assert views.state("eu-west-1", "eu-west-1") == "alive"
