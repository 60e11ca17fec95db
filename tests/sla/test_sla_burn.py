"""Burn-rate alerts on a simulated clock: a recorded series replayed sample by sample.

Objective 99.9 % (budget 0.1 %), 10 s samples, three healthy days first so
every window is full when the burn starts.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from meshd_plugins.sla import Sample, SampleStore
from meshd_plugins.sla.burn import HOUR_MS, MIN_MS, BurnEngine, Transition

STEP = 10_000
DAY = 24 * HOUR_MS


def series(*phases: tuple[int, float], step: int = STEP) -> list[Sample]:
    """Phases of (duration ms, availability) as consecutive samples (10 s; a minute keeps multi-day replays quick)."""
    out, t = [], 0
    for duration, availability in phases:
        for _ in range(duration // step):
            out.append(Sample("eu-west-1", t, step, step * availability, 10))
            t += step
    return out


def replay(samples: list[Sample], objective: str = "99.9") -> tuple[BurnEngine, list[Transition]]:
    engine = BurnEngine("eu-west-1", Decimal(objective))
    changes: list[Transition] = []
    for s in samples:
        changes += engine.add(s.t_ms, s.span_ms, s.up_ms)
    return engine, changes


def times(changes: list[Transition], rule: str) -> list[tuple[bool, int]]:
    return [(c.firing, c.at_ms) for c in changes if c.rule.name == rule]


def test_a_fast_burn_pages_within_a_minute_and_resolves_when_it_stops(tmp_path: Path) -> None:
    store = SampleStore(tmp_path / "h.sqlite")  # replayed from the store: what a daemon would read back
    store.add(series((3 * DAY, 1.0), (10 * MIN_MS, 0.0), (1 * DAY, 1.0)))
    engine, changes = replay(store.samples(0, 10**13))
    outage = 3 * DAY
    page = times(changes, "page_fast")
    # 14.4x over 1 h needs 51.84 s of a total outage: the end of the 6th failing sample.
    assert page[0] == (True, outage + 6 * STEP)
    assert page[1][0] is False
    # It stops once the 5-minute window holds less than 4.32 s of the outage: within 5 min of recovery.
    recovered = outage + 10 * MIN_MS
    assert recovered < page[1][1] <= recovered + 5 * MIN_MS
    assert len(page) == 2
    assert all(not on for on in engine.firing.values())  # everything resolved a day later
    [incident] = engine.incidents
    assert (incident.opened_ms, incident.detected_ms, incident.resolved_ms) == (outage, outage + 6 * STEP, recovered)
    assert incident.ttd_ms == 60_000 and incident.ttr_ms == 10 * MIN_MS
    assert incident.rules[0] == "page_fast"


def test_a_slow_burn_opens_tickets_not_pages_and_they_resolve() -> None:
    # 5x: 0.5 % unavailable for two days.
    _, changes = replay(series((3 * DAY, 1.0), (2 * DAY, 0.995), (1 * DAY, 1.0), step=MIN_MS))
    assert times(changes, "page_fast") == [] and times(changes, "page_slow") == []
    fast = times(changes, "ticket_fast")
    slow = times(changes, "ticket_slow")
    start, stop = 3 * DAY, 5 * DAY
    # 3x over a day: once 3/5 of the day burnt (14.4 h); 1x over 3 days: once 1/5 of 3 days (14.4 h).
    assert fast[0][0] and abs(fast[0][1] - (start + 864 * MIN_MS)) <= MIN_MS
    assert slow[0][0] and abs(slow[0][1] - (start + 864 * MIN_MS)) <= MIN_MS
    # They resolve after the burn stops, when the short window (2 h, 6 h) falls below the factor.
    assert not fast[1][0] and abs(fast[1][1] - (stop + 48 * MIN_MS)) <= MIN_MS
    assert not slow[1][0] and abs(slow[1][1] - (stop + 288 * MIN_MS)) <= MIN_MS
    assert len(fast) == len(slow) == 2


@pytest.mark.parametrize("phase", [
    (6 * DAY, 0.9991),            # 0.9x for six days: under the 1x ticket
    (55 * MIN_MS, 0.986),         # 14x for 55 minutes: under the 14.4x page over 1 h, too short for the others
    (5 * HOUR_MS, 0.9941),        # 5.9x for 5 hours: under the 6x page over 6 h and the 3x ticket over 1 d
], ids=["0.9x-6d", "14x-55m", "5.9x-5h"])
def test_burns_below_every_threshold_never_fire(phase: tuple[int, float]) -> None:
    _, changes = replay(series((3 * DAY, 1.0), phase, (1 * DAY, 1.0), step=MIN_MS))
    assert changes == []


def test_an_objective_without_a_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="below 100"):
        BurnEngine("eu", Decimal(100))
