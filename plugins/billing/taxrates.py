"""``tax_rates.yaml``: tax as dated data, per customer jurisdiction (see the file's header)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field

from meshd.config import StrictModel
from meshd.yamlsource import KeyPath

from .files import load_checked, load_or_raise
from .money import exact

JURISDICTION = r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$"


def _percent(value: object) -> Decimal:
    number = exact(value, "rate")  # a float rate would already be inexact: refused like money
    if not Decimal(0) <= number <= Decimal(100):
        raise ValueError(f"{number} is not a percent between 0 and 100")
    return number


Percent = Annotated[Decimal, BeforeValidator(_percent)]


class Source(StrictModel):
    title: str = Field(min_length=1)
    url: str | None = None
    secondary: bool = False
    """The source is not the tax authority itself."""


class DatedRate(StrictModel):
    from_: date | None = Field(default=None, alias="from")
    """In force from this day (inclusive) until the next entry's; None: no known start (first entry only)."""
    rate: Percent


class Tax(StrictModel):
    name: str = Field(min_length=1)
    source: str
    rates: list[DatedRate] = Field(min_length=1)
    taxable: bool = True
    taxable_share: Percent = Decimal(100)

    def rate_on(self, day: date) -> Decimal | None:
        """The rate in force on ``day``, or None before the first known date."""
        found = None
        for entry in self.rates:
            if entry.from_ is None or entry.from_ <= day:
                found = entry.rate
        return found


class Jurisdiction(StrictModel):
    eu_vat: bool = False
    vat_id_pattern: str | None = None
    note: str | None = None
    taxes: list[Tax] = Field(default_factory=list)

    def vat_id_ok(self, vat_id: str) -> bool:
        return bool(self.vat_id_pattern and re.fullmatch(self.vat_id_pattern, vat_id))


class TaxRates(StrictModel):
    sources: dict[str, Source] = Field(min_length=1)
    jurisdictions: dict[Annotated[str, Field(pattern=JURISDICTION)], Jurisdiction] = Field(min_length=1)

    def eu_members(self) -> set[str]:
        return {code for code, j in self.jurisdictions.items() if j.eu_vat}


def check_tax_rates(rates: TaxRates, issue: Callable[[KeyPath, str], None]) -> None:
    for code, j in rates.jurisdictions.items():
        base = ("jurisdictions", code)
        if j.eu_vat and "-" in code:
            issue(base + ("eu_vat",), "an EU member state is a country code (DE), not a subdivision")
        if j.eu_vat and not j.vat_id_pattern:
            issue(base + ("eu_vat",), "an EU member state needs vat_id_pattern (reverse charge needs a well-formed VAT ID)")
        if j.vat_id_pattern:
            try:
                re.compile(j.vat_id_pattern)
            except re.error as exc:
                issue(base + ("vat_id_pattern",), f"not a regular expression: {exc}")
        if not j.taxes and not j.note:
            issue(base + ("taxes",), "no taxes: write the note printed instead (why no tax is due)")
        for i, tax in enumerate(j.taxes):
            where = base + ("taxes", i)
            if tax.source not in rates.sources:
                issue(where + ("source",), f"source {tax.source!r} is not declared under sources: "
                                           f"(known: {', '.join(sorted(rates.sources))})")
            for k, entry in enumerate(tax.rates):
                if k > 0 and entry.from_ is None:
                    issue(where + ("rates", k, "from"), "only the first rate may have no start date")
                if k > 0 and entry.from_ is not None and tax.rates[k - 1].from_ is not None \
                        and entry.from_ <= tax.rates[k - 1].from_:  # type: ignore[operator]
                    issue(where + ("rates", k, "from"), "rates must be listed in order of their dates")


def load_tax_rates(path: Path) -> TaxRates:
    """The validated file; raises :class:`meshd.config.ConfigError` naming file:line: key for every problem."""
    return load_or_raise(path, TaxRates, check_tax_rates)


def check_tax_rates_file(path: Path) -> tuple[TaxRates | None, list]:
    return load_checked(path, TaxRates, check_tax_rates)
