"""Hysteresis: N consecutive results before a probe's state changes, separately for failing and recovering."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshd_plugins.health.hysteresis import Hysteresis, ProbeState
from meshd_plugins.health.probes import Level

OK, WARN, CRIT = Level.OK, Level.WARNING, Level.CRITICAL


def feed(h: Hysteresis, levels: list[Level]) -> list[ProbeState | None]:
    return [h.observe(level) for level in levels]


def test_first_ok_result_settles_at_once() -> None:
    h = Hysteresis(fail_after=3, recover_after=2)
    assert h.state is ProbeState.PENDING
    assert h.observe(OK) is ProbeState.OK


def test_failing_needs_fail_after_consecutive_results() -> None:
    h = Hysteresis(fail_after=3, recover_after=2)
    assert feed(h, [OK, CRIT, CRIT]) == [ProbeState.OK, None, None]
    assert (h.streak, h.needed) == (2, 3)
    assert h.observe(CRIT) is ProbeState.CRITICAL
    assert h.streak == 0


def test_one_good_result_restarts_the_failing_count() -> None:
    h = Hysteresis(fail_after=3, recover_after=2)
    feed(h, [OK, CRIT, CRIT, OK, CRIT, CRIT])
    assert h.state is ProbeState.OK  # never three in a row
    assert h.observe(CRIT) is ProbeState.CRITICAL


def test_recovering_needs_recover_after_consecutive_results() -> None:
    h = Hysteresis(fail_after=1, recover_after=3)
    assert h.observe(CRIT) is ProbeState.CRITICAL
    assert feed(h, [OK, OK]) == [None, None]
    assert h.observe(CRIT) is None  # a relapse restarts the recovery count
    assert feed(h, [OK, OK, OK]) == [None, None, ProbeState.OK]


def test_mixed_failures_settle_at_the_mildest_level_they_all_reached() -> None:
    h = Hysteresis(fail_after=3, recover_after=2)
    h.observe(OK)
    assert feed(h, [CRIT, WARN, CRIT]) == [None, None, ProbeState.WARNING]
    # From warning, three criticals in a row escalate.
    assert feed(h, [CRIT, CRIT, CRIT]) == [None, None, ProbeState.CRITICAL]


def test_partial_recovery_settles_at_the_worst_level_of_the_streak() -> None:
    h = Hysteresis(fail_after=1, recover_after=2)
    h.observe(CRIT)
    assert feed(h, [OK, WARN]) == [None, ProbeState.WARNING]
    assert feed(h, [OK, OK]) == [None, ProbeState.OK]


def test_failing_from_pending_needs_the_same_count() -> None:
    h = Hysteresis(fail_after=2, recover_after=2)
    assert h.observe(WARN) is None
    assert h.state is ProbeState.PENDING and h.state.level is Level.OK
    assert h.observe(WARN) is ProbeState.WARNING


def test_consecutive_counts_results_at_the_latest_level() -> None:
    h = Hysteresis(fail_after=5, recover_after=5)
    feed(h, [OK, OK, CRIT, CRIT, CRIT])
    assert h.consecutive == 3 and h.last is CRIT


def test_counts_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Hysteresis(fail_after=0, recover_after=1)


levels = st.lists(st.sampled_from([OK, WARN, CRIT]), max_size=60)


@settings(max_examples=300, deadline=None)
@given(levels, st.integers(1, 5), st.integers(1, 5))
def test_every_change_is_backed_by_n_consecutive_results(results: list[Level], fail_after: int,
                                                         recover_after: int) -> None:
    """Property: a change to a worse state follows fail_after results all at least that bad and worse
    than the old state; a change to a better one follows recover_after results all at most that bad
    and better than the old state."""
    h = Hysteresis(fail_after, recover_after)
    for i, level in enumerate(results):
        before = h.state
        changed = h.observe(level)
        if changed is None:
            assert h.state is before
            continue
        assert changed is h.state and changed is not before
        if before is ProbeState.PENDING and changed is ProbeState.OK:
            assert level is OK
            continue
        if changed.level > before.level:
            window = results[i - fail_after + 1: i + 1]
            assert len(window) == fail_after
            assert all(r > before.level for r in window) and min(window) == changed.level
        else:
            window = results[i - recover_after + 1: i + 1]
            assert len(window) == recover_after
            assert all(r < before.level for r in window) and max(window) == changed.level


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6))
def test_a_steady_signal_always_settles(fail_after: int, recover_after: int, repeat: int) -> None:
    h = Hysteresis(fail_after, recover_after)
    feed(h, [CRIT] * fail_after)
    assert h.state is ProbeState.CRITICAL
    feed(h, [OK] * (recover_after - 1))
    assert h.state is ProbeState.CRITICAL
    h.observe(OK)
    assert h.state is ProbeState.OK
    feed(h, [OK] * repeat)
    assert h.state is ProbeState.OK
