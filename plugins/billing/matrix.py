"""``billing_matrix.yaml``: currencies, seller entities, plans, overage prices and add-ons."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field

from meshd.config import StrictModel
from meshd.yamlsource import KeyPath

from .files import load_or_raise
from .fx import Conversion, Currency, FxRates
from .money import MINOR_UNITS, exact

CONVERT_FROM = "USD"
"""A price missing a currency is converted from its price in this one."""


def _amount(value: object) -> Decimal:
    number = exact(value, "amount")
    if number < 0:
        raise ValueError(f"{number} is negative")
    return number


Amount = Annotated[Decimal, BeforeValidator(_amount)]
Price = dict[Currency, Amount]


class Entity(StrictModel):
    jurisdiction: Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
    name: str = Field(min_length=1)
    address: list[str] = Field(min_length=1)
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
    tax_number: str = Field(min_length=1)
    invoice_prefix: Annotated[str, Field(pattern=r"^[A-Z0-9-]{1,12}$")]

    def public(self, key: str) -> dict[str, object]:
        return {"id": key, "name": self.name, "address": list(self.address), "country": self.country,
                "tax_number": self.tax_number}


class Tier(StrictModel):
    up_to: Amount | None = None
    """Units over the quota this tier reaches (cumulative); None: no limit (the last tier)."""
    price: Price


class Overage(StrictModel):
    per: Annotated[Decimal, BeforeValidator(_amount)] = Decimal(1)
    price: Price | None = None
    tiers: list[Tier] | None = None


class Plan(StrictModel):
    base: Price
    included: dict[str, Amount] = Field(default_factory=dict)
    overage: dict[str, Overage] = Field(default_factory=dict)
    addons: list[str] = Field(default_factory=list)


class Addon(StrictModel):
    price: Price


class BillingMatrix(StrictModel):
    currencies: list[Currency] = Field(min_length=1)
    entities: dict[str, Entity] = Field(min_length=1)
    plans: dict[str, Plan] = Field(min_length=1)
    addons: dict[str, Addon] = Field(default_factory=dict)
    tenant_addons: dict[str, list[str]] = Field(default_factory=dict)

    def entity_for(self, jurisdiction: str) -> tuple[str, Entity] | None:
        for key, entity in self.entities.items():
            if entity.jurisdiction == jurisdiction:
                return key, entity
        return None

    def addons_of(self, plan: str, tenant: str) -> list[str]:
        out = list(self.plans[plan].addons)
        out += [a for a in self.tenant_addons.get(tenant, []) if a not in out]
        return out


class PriceError(ValueError):
    pass


def price_in(price: Price, currency: str, fx: FxRates, day: date) -> tuple[Decimal, Conversion | None]:
    """``price`` in ``currency``: as written, or converted from its USD price at the dated rate."""
    if currency in price:
        return price[currency], None
    if CONVERT_FROM not in price:
        raise PriceError(f"no {currency} price and no {CONVERT_FROM} price to convert from")
    conversion = fx.rate(CONVERT_FROM, currency, day)
    return price[CONVERT_FROM] * conversion.rate, conversion


def check_matrix(matrix: BillingMatrix, issue: Callable[[KeyPath, str], None],
                 meters: Iterable[str] | None = None) -> None:
    """What pydantic cannot see: currencies, prices, meters and add-ons that refer to nothing."""
    currencies = set(matrix.currencies)
    for i, code in enumerate(matrix.currencies):
        if code not in MINOR_UNITS:
            issue(("currencies", i), f"currency {code} has no known ISO 4217 minor unit")
    jurisdictions: dict[str, str] = {}
    prefixes: dict[str, str] = {}
    for key, entity in matrix.entities.items():
        if entity.jurisdiction in jurisdictions:
            issue(("entities", key, "jurisdiction"),
                  f"{entity.jurisdiction} already has seller {jurisdictions[entity.jurisdiction]}")
        jurisdictions.setdefault(entity.jurisdiction, key)
        if entity.invoice_prefix in prefixes:
            issue(("entities", key, "invoice_prefix"), f"prefix already used by {prefixes[entity.invoice_prefix]}")
        prefixes.setdefault(entity.invoice_prefix, key)

    def check_price(price: Price, where: KeyPath, every_currency: bool) -> None:
        for code in price:
            if code not in currencies:
                issue(where + (code,), f"currency {code} is not in currencies: ({', '.join(matrix.currencies)})")
        missing = sorted(currencies - set(price))
        if missing and (every_currency or CONVERT_FROM not in price):
            need = "a price in every currency" if every_currency else f"a {CONVERT_FROM} price to convert from"
            issue(where, f"no price in {', '.join(missing)}: {need}")

    known_meters = set(meters) if meters is not None else None
    for name, plan in matrix.plans.items():
        check_price(plan.base, ("plans", name, "base"), every_currency=True)
        for section in ("included", "overage"):
            for meter in getattr(plan, section):
                if known_meters is not None and meter not in known_meters:
                    issue(("plans", name, section, meter), f"meter {meter!r} is not a meter of the metering "
                          f"plugin (known: {', '.join(sorted(known_meters)) or 'none'})")
        for meter, over in plan.overage.items():
            where = ("plans", name, "overage", meter)
            if over.per <= 0:
                issue(where + ("per",), "must be more than 0")
            if (over.price is None) == (over.tiers is None):
                issue(where, "write either price (flat) or tiers (graduated)")
            if over.price is not None:
                check_price(over.price, where + ("price",), every_currency=False)
            for t, tier in enumerate(over.tiers or []):
                check_price(tier.price, where + ("tiers", t, "price"), every_currency=False)
                last = t == len(over.tiers or []) - 1
                if (tier.up_to is None) != last:
                    issue(where + ("tiers", t, "up_to"), "every tier but the last needs up_to; the last has none")
                if t and tier.up_to is not None and (over.tiers or [])[t - 1].up_to is not None \
                        and tier.up_to <= (over.tiers or [])[t - 1].up_to:  # type: ignore[operator]
                    issue(where + ("tiers", t, "up_to"), "tiers must grow")
        for i, addon in enumerate(plan.addons):
            if addon not in matrix.addons:
                issue(("plans", name, "addons", i), f"add-on {addon!r} is not under addons:")
    for name, addon in matrix.addons.items():
        check_price(addon.price, ("addons", name, "price"), every_currency=False)
    for tenant, addons in matrix.tenant_addons.items():
        for i, addon in enumerate(addons):
            if addon not in matrix.addons:
                issue(("tenant_addons", tenant, i), f"add-on {addon!r} is not under addons:")


def load_matrix(path: Path, meters: Iterable[str] | None = None) -> BillingMatrix:
    meter_list = list(meters) if meters is not None else None
    return load_or_raise(path, BillingMatrix, lambda m, issue: check_matrix(m, issue, meter_list))
