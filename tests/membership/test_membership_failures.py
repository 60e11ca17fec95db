"""Failure detection with real daemons: crash, graceful leave, freeze, cut off, comeback.

One federation of five `meshd run` processes (each behind a TCP proxy to
NATS) goes through the failures in turn, default timing profile; every step
waits on what the daemons report in /status, never on a fixed sleep.
"""

from __future__ import annotations

import signal

import pytest

pytestmark = pytest.mark.nats

REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ca-central-1"]


def test_crash_leave_freeze_cut_and_comeback(membership_federation) -> None:
    fed, views = membership_federation(REGIONS, proxies=True)
    everyone = list(REGIONS)

    # -- SIGKILL: dead at every survivor, exactly one death each.
    fed.kill("eu-west-1")
    survivors = [r for r in everyone if r != "eu-west-1"]
    fed.wait_for(lambda: views.all_see("eu-west-1", "dead", survivors), 20, what="eu-west-1 dead everywhere")
    assert [views.deaths(o, "eu-west-1") for o in survivors] == [1.0] * len(survivors)

    # -- SIGTERM: left at every survivor, and never dead on the way.
    fed.signal("eu-central-1", signal.SIGTERM)
    seen: set[str | None] = set()

    def left_everywhere() -> bool:
        states = [views.state(o, "eu-central-1") for o in ("us-east-1", "us-west-2", "ca-central-1")]
        seen.update(states)
        return states == ["left"] * 3

    fed.wait_for(left_everywhere, 10, interval=0.02, what="eu-central-1 left everywhere")
    assert "dead" not in seen and "suspect" not in seen, seen
    fed.procs["eu-central-1"].wait(10)
    for observer in ("us-east-1", "us-west-2", "ca-central-1"):
        assert views.deaths(observer, "eu-central-1") == 0

    # -- The crashed and the departed region come back: alive everywhere, no operator action.
    dead_inc = views.incarnation("us-east-1", "eu-west-1")
    fed.start_daemon("eu-west-1")
    fed.start_daemon("eu-central-1")
    fed.wait_for(views.converged, 20, what="everyone alive again after the restarts")
    assert views.incarnation("us-west-2", "eu-west-1") > dead_inc

    # -- SIGSTOP past the suspicion timeout: dead; SIGCONT: alive with a higher incarnation.
    frozen_inc = views.incarnation("us-east-1", "ca-central-1")
    deaths_by_frozen = {r: views.deaths("ca-central-1", r) for r in everyone if r != "ca-central-1"}
    fed.pause("ca-central-1")
    try:
        watchers = [r for r in everyone if r != "ca-central-1"]
        fed.wait_for(lambda: views.all_see("ca-central-1", "dead", watchers), 20, what="frozen region dead")
    finally:
        fed.resume("ca-central-1")
    fed.wait_for(views.converged, 20, what="the frozen region alive again everywhere")
    assert min(views.incarnation(o, "ca-central-1") for o in watchers) > frozen_inc
    # Waking up, the frozen daemon must not blame the others for its own gap.
    assert {r: views.deaths("ca-central-1", r) for r in deaths_by_frozen} == deaths_by_frozen

    # -- Cut off from NATS (TCP proxy black hole): it says isolated, the others say dead.
    deaths_by_cut = {r: views.deaths("us-west-2", r) for r in everyone if r != "us-west-2"}
    fed.cut("us-west-2")
    try:
        rest = [r for r in everyone if r != "us-west-2"]
        fed.wait_for(lambda: views.state("us-west-2", "us-west-2") == "isolated", 20, what="us-west-2 isolated")
        fed.wait_for(lambda: views.all_see("us-west-2", "dead", rest), 20, what="us-west-2 dead for the others")
        # While isolated it declares no one dead.
        assert {r: views.deaths("us-west-2", r) for r in deaths_by_cut} == deaths_by_cut
        assert all(views.state("us-west-2", r) != "dead" for r in rest)
    finally:
        fed.heal("us-west-2")
    fed.wait_for(views.converged, 30, what="the halves re-merge after the cut heals")
    fed.wait_for(lambda: views.state("us-west-2", "us-west-2") == "alive", 10, what="us-west-2 no longer isolated")
    assert {r: views.deaths("us-west-2", r) for r in deaths_by_cut} == deaths_by_cut
