"""The fence's state machine, driven by a hand-held clock: when it goes up, what holds it, when it comes down."""

from __future__ import annotations

from meshd_plugins.fencing.state import DISABLED, FAILED_BACK, FAILED_OVER, ISOLATED, REJOINED, Change, FenceState

REGION = "eu-west-1"


def fence(after: float = 2.0, settle: float = 3.0) -> FenceState:
    return FenceState(REGION, after, settle)


def test_an_isolated_region_fences_itself_after_exactly_after_seconds() -> None:
    s = fence()
    s.isolated(100.0, "bus connection lost")
    assert s.evaluate(101.9) is None and not s.fenced
    assert s.next_deadline(101.9) == 102.0
    assert s.evaluate(102.0) == Change(True, ISOLATED)
    assert s.fenced and s.reason == ISOLATED and s.isolated_why == "bus connection lost"
    assert s.evaluate(150.0) is None  # one change, not one per evaluation


def test_a_short_blip_never_fences() -> None:
    s = fence()
    s.isolated(100.0)
    s.rejoined(101.0)
    assert s.evaluate(200.0) is None and not s.fenced and s.next_deadline(200.0) is None


def test_repeated_isolated_events_keep_the_first_start() -> None:
    s = fence()
    s.isolated(100.0)
    s.isolated(101.5, "echo lost")
    assert s.evaluate(102.0) == Change(True, ISOLATED)


def test_after_rejoining_the_fence_holds_for_settle_then_lifts() -> None:
    s = fence(after=2.0, settle=3.0)
    s.isolated(100.0)
    assert s.evaluate(102.0) == Change(True, ISOLATED)
    s.rejoined(110.0)
    assert s.evaluate(112.9) is None and s.fenced
    assert s.next_deadline(112.9) == 113.0
    assert s.to_json(112.0)["settle_left_s"] == 1.0
    assert s.evaluate(113.0) == Change(False, REJOINED)
    assert not s.fenced and s.next_deadline(113.0) is None


def test_a_failover_committed_while_cut_off_keeps_the_fence_after_the_rejoin() -> None:
    s = fence()
    s.isolated(100.0)
    s.evaluate(102.0)
    s.rejoined(110.0)
    assert s.decision(REGION, 4, "failover", "eu-central-1")
    assert s.evaluate(200.0) == Change(True, FAILED_OVER)  # still fenced, now for this reason
    assert s.evaluate(200.5) is None
    assert s.next_deadline(200.0) is None  # only a failback can lift it
    assert s.to_json(200.0)["failover"] == {"term": 4, "target": "eu-central-1"}
    assert s.decision(REGION, 4, "failback", None)
    assert s.evaluate(201.0) == Change(False, FAILED_BACK)


def test_a_failover_in_force_fences_a_connected_region_too() -> None:
    s = fence()
    s.decision(REGION, 2, "failover", None)  # e.g. replayed at start from the decisions bucket
    assert s.evaluate(0.0) == Change(True, FAILED_OVER)
    s.decision(REGION, 2, "failback", None)
    assert s.evaluate(1.0) == Change(False, FAILED_BACK)


def test_decisions_about_other_regions_and_stale_decisions_are_ignored() -> None:
    s = fence()
    assert not s.decision("eu-central-1", 9, "failover", REGION)
    assert s.decision(REGION, 3, "failover", None)
    assert s.decision(REGION, 3, "failback", None)
    # Replayed out of order: an older failover must not put the fence back up.
    assert not s.decision(REGION, 3, "failover", None)
    assert not s.decision(REGION, 2, "failover", None)
    assert s.evaluate(0.0) is None and not s.fenced


def test_while_still_isolated_a_failback_does_not_lift_the_fence() -> None:
    s = fence()
    s.isolated(100.0)
    s.decision(REGION, 1, "failover", None)
    assert s.evaluate(100.5) == Change(True, FAILED_OVER)
    s.decision(REGION, 1, "failback", None)
    assert s.evaluate(101.0) is None and s.fenced and s.reason == FAILED_OVER
    assert s.evaluate(103.0) == Change(True, ISOLATED) and s.fenced


def test_switching_fencing_off_lifts_a_fence_at_once() -> None:
    s = fence()
    s.isolated(0.0)
    s.evaluate(5.0)
    assert s.disable(6.0) == Change(False, DISABLED) and not s.fenced
    assert fence().disable(6.0) is None


def test_status_document() -> None:
    s = fence()
    s.isolated(10.0, "our own echo through NATS did not come back")
    doc = s.to_json(11.25)
    assert doc == {"fenced": False, "reason": None, "isolated_for_s": 1.25,
                   "isolated_reason": "our own echo through NATS did not come back", "settle_left_s": None,
                   "failover": None, "last_change": None}
    s.evaluate(12.5)
    assert s.to_json(13.0)["last_change"] == {"fenced": True, "reason": ISOLATED, "isolated_for_s": 2.5,
                                              "rejoined_for_s": None}
    s.rejoined(20.0)
    s.evaluate(23.5)
    assert s.to_json(24.0)["last_change"] == {"fenced": False, "reason": REJOINED, "isolated_for_s": None,
                                              "rejoined_for_s": 3.5}
