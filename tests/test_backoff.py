"""meshd.backoff: the one exponential backoff with jitter every retry loop uses."""

from __future__ import annotations

import random

import pytest

from meshd.backoff import Backoff, exponential


def test_without_jitter_the_delay_doubles_from_initial_up_to_the_cap() -> None:
    assert [exponential(n, 0.5, 10.0, jitter=0) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert exponential(0, 0.5, 10.0, jitter=0) == 0.5          # attempt numbers start at 1
    assert exponential(3, 1.0, 100.0, factor=3.0, jitter=0) == 9.0


def test_jitter_draws_each_delay_from_the_lower_fraction_of_its_nominal_value() -> None:
    rng = random.Random(7)
    for attempt in range(1, 12):
        nominal = min(30.0, 0.5 * 2 ** (attempt - 1))
        draws = [exponential(attempt, 0.5, 30.0, jitter=0.25, rng=rng) for _ in range(200)]
        assert all(nominal * 0.75 <= d <= nominal for d in draws)
        assert max(draws) - min(draws) > nominal * 0.15      # really spread, not a constant


def test_daemons_failing_together_do_not_retry_together() -> None:
    waits = {round(Backoff(1.0, 60.0, rng=random.Random(seed)).next(), 6) for seed in range(7)}
    assert len(waits) == 7


def test_a_huge_attempt_count_stays_at_the_cap() -> None:
    assert exponential(10_000, 0.5, 30.0, jitter=0) == 30.0
    assert exponential(10_000, 0.5, 30.0, factor=1e10, jitter=0) == 30.0   # factor**n overflows a float


def test_next_counts_failures_and_reset_starts_over() -> None:
    b = Backoff(0.2, 10.0, jitter=0)
    assert [b.next() for _ in range(4)] == [0.2, 0.4, 0.8, 1.6]
    assert b.attempts == 4
    b.reset()
    assert b.attempts == 0 and b.next() == 0.2


def test_a_cap_below_initial_wins() -> None:
    assert Backoff(5.0, 1.0, jitter=0).next() == 1.0


@pytest.mark.parametrize("kwargs, field", [
    ({"initial": -1.0, "maximum": 1.0}, "initial"),
    ({"initial": 1.0, "maximum": 2.0, "factor": 0.5}, "factor"),
    ({"initial": 1.0, "maximum": 2.0, "jitter": 1.5}, "jitter"),
])
def test_bad_settings_are_refused_naming_the_setting(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Backoff(**kwargs)
