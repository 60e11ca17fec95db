"""Money as ``Decimal`` in ISO 4217 minor units; never a float.

Rounding rule (the one level where it happens): every invoice LINE is
rounded half-up to its currency's minor unit when the line is made (a
charge line from quantity x unit price, a tax line from its base x rate).
Totals are then plain sums of rounded lines, so a printed total always
equals the sum of the printed lines to the minor unit, and each line reads
the same on the invoice as in the ledger. Per-line rounding is what the
CRA allows when applied consistently, and what Revenu Quebec describes
(>= 0.005 rounds up); Decimal's own default is half-even, so every rounding
goes through :func:`round_line`.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

MINOR_UNITS: dict[str, int] = {
    "USD": 2, "EUR": 2, "GBP": 2, "CAD": 2, "AED": 2, "SGD": 2,
    # Not sold in yet; here so that nothing assumes two decimals.
    "JPY": 0, "BHD": 3, "KWD": 3,
}


class MoneyError(ValueError):
    """An amount that is not exact (a float), not a number, or in a currency with no known minor unit."""


def minor_unit(currency: str) -> int:
    try:
        return MINOR_UNITS[currency]
    except KeyError:
        raise MoneyError(f"currency {currency!r} has no configured ISO 4217 minor unit "
                         f"(known: {', '.join(sorted(MINOR_UNITS))})") from None


def exact(value: Any, what: str = "amount") -> Decimal:
    """``value`` as an exact Decimal: an int, a Decimal or a decimal string; a float is refused.

    A float has already lost the cents (0.1 + 0.2 != 0.3), so refusing it
    at the door is the only way to keep every figure exact.
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise MoneyError(f"{what} {value!r} is a {type(value).__name__}: write money as a decimal string "
                         "or Decimal, never a float")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, (int, str)):
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise MoneyError(f"{what} {value!r} is not a decimal number") from None
    else:
        raise MoneyError(f"{what} {value!r} is a {type(value).__name__}, not a decimal number")
    if not number.is_finite():
        raise MoneyError(f"{what} {value!r} is not a finite number")
    return number


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_unit(currency))


def round_line(amount: Any, currency: str) -> Decimal:
    """``amount`` rounded half-up to ``currency``'s minor unit: the one rounding step of a line."""
    return exact(amount).quantize(quantum(currency), rounding=ROUND_HALF_UP)


def is_rounded(amount: Decimal, currency: str) -> bool:
    """True when ``amount`` has no digits below the currency's minor unit."""
    return amount == amount.quantize(quantum(currency), rounding=ROUND_HALF_UP)


def to_minor(amount: Decimal, currency: str) -> int:
    """A rounded amount as an integer count of minor units (cents, fils)."""
    if not is_rounded(amount, currency):
        raise MoneyError(f"{amount} {currency} is not rounded to the minor unit")
    return int(amount.scaleb(minor_unit(currency)))


def as_text(amount: Decimal, currency: str) -> str:
    """The amount with exactly the currency's minor digits, for JSON (a string, never a float)."""
    return str(round_line(amount, currency))


def total(amounts: list[Decimal], currency: str) -> Decimal:
    """The sum of rounded lines; refuses an unrounded one so that a total never hides a rounding."""
    out = Decimal(0).quantize(quantum(currency))
    for amount in amounts:
        if not is_rounded(amount, currency):
            raise MoneyError(f"line amount {amount} {currency} was not rounded to the minor unit")
        out += amount
    return out
