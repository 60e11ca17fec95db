"""Money: exact decimals, half-up rounding per line, totals that are the sum of their lines."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshd_plugins.billing.money import MINOR_UNITS, MoneyError, exact, round_line, to_minor, total


def test_a_float_is_refused_everywhere_money_enters() -> None:
    with pytest.raises(MoneyError, match="float"):
        exact(0.1)
    with pytest.raises(MoneyError, match="float"):
        round_line(19.99, "EUR")
    with pytest.raises(MoneyError):
        exact("twelve")
    with pytest.raises(MoneyError):
        exact("NaN")


def test_rounding_is_half_up_at_the_currency_minor_unit() -> None:
    # Decimal's default (half-even) would give 0.12 and 2: the rule must be explicit.
    assert round_line(Decimal("0.125"), "EUR") == Decimal("0.13")
    assert round_line(Decimal("2.5"), "JPY") == Decimal("3")
    assert round_line(Decimal("1.0005"), "BHD") == Decimal("1.001")
    assert round_line("-0.125", "USD") == Decimal("-0.13")
    assert to_minor(Decimal("12.34"), "SGD") == 1234
    assert to_minor(Decimal("1.234"), "BHD") == 1234


def test_an_unknown_currency_is_a_clear_error() -> None:
    with pytest.raises(MoneyError, match="XYZ"):
        round_line("1", "XYZ")


def test_a_total_refuses_an_unrounded_line() -> None:
    with pytest.raises(MoneyError, match="not rounded"):
        total([Decimal("1.005")], "EUR")


amounts = st.decimals(min_value=Decimal("-1000000"), max_value=Decimal("1000000"), places=6,
                      allow_nan=False, allow_infinity=False)


@given(st.sampled_from(sorted(MINOR_UNITS)), st.lists(amounts, max_size=30))
def test_a_total_equals_the_sum_of_its_lines_to_the_minor_unit(currency: str, raw: list[Decimal]) -> None:
    lines = [round_line(a, currency) for a in raw]
    summed = total(lines, currency)
    assert to_minor(summed, currency) == sum(to_minor(line, currency) for line in lines)
