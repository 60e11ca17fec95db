"""``fx_rates.yaml``: dated exchange rates, for the prices that must be converted."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field

from meshd.config import StrictModel
from meshd.yamlsource import KeyPath

from .files import load_or_raise
from .money import MINOR_UNITS, exact

Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


def _positive(value: object) -> Decimal:
    number = exact(value, "rate")
    if number <= 0:
        raise ValueError(f"{number} is not a positive rate")
    return number


Rate = Annotated[Decimal, BeforeValidator(_positive)]


class FxError(ValueError):
    """No rate to convert with (none dated on or before the day, or the currency is not quoted)."""


class DatedRates(StrictModel):
    date: date
    base: Currency
    quotes: dict[Currency, Rate] = Field(min_length=1)


class FxRates(StrictModel):
    source: str = Field(min_length=1)
    rates: list[DatedRates] = Field(default_factory=list)

    def rate(self, base: str, quote: str, day: date) -> Conversion:
        """The latest rate from ``base`` to ``quote`` dated on or before ``day``."""
        found = None
        for entry in self.rates:
            if entry.base == base and quote in entry.quotes and entry.date <= day and \
                    (found is None or entry.date > found.date):
                found = entry
        if found is None:
            raise FxError(f"no {base}->{quote} rate dated on or before {day.isoformat()} in fx_rates.yaml")
        return Conversion(base, quote, found.quotes[quote], found.date, self.source)


@dataclass(frozen=True)
class Conversion:
    base: str
    quote: str
    rate: Decimal
    date: date
    source: str

    def to_json(self) -> dict[str, str]:
        return {"from": self.base, "to": self.quote, "rate": str(self.rate), "date": self.date.isoformat(),
                "source": self.source}


def check_fx(fx: FxRates, issue: Callable[[KeyPath, str], None]) -> None:
    for i, entry in enumerate(fx.rates):
        for code in (entry.base, *entry.quotes):
            if code not in MINOR_UNITS:
                issue(("rates", i), f"currency {code} has no known ISO 4217 minor unit")


def load_fx(path: Path) -> FxRates:
    return load_or_raise(path, FxRates, check_fx)
