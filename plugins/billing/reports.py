"""MRR from the tenant directory and the price matrix, revenue from issued invoices; both in one reporting currency.

Amounts are summed exactly in each tenant's own currency, converted once per
currency at the rate dated on or before the report's date (through USD when
``fx_rates.yaml`` has no direct rate), and rounded half-up once, at the end
of each total. The report states every rate it used.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from meshd.tenants import Tenant

from .fx import Conversion, FxError, FxRates
from .invoice import BillingFiles, InvoiceError
from .matrix import CONVERT_FROM, PriceError, price_in
from .money import round_line


class Converter:
    """Amounts of any configured currency in ``reporting``, at the rates of ``day``; remembers the rates used."""

    def __init__(self, fx: FxRates, reporting: str, day: date):
        self.fx, self.reporting, self.day = fx, reporting, day
        self._legs: dict[str, list[tuple[Conversion, bool]]] = {}
        """Per currency: the rates to apply, each with True to multiply, False to divide."""

    def _path(self, currency: str) -> list[tuple[Conversion, bool]]:
        if currency not in self._legs:
            try:
                self._legs[currency] = [(self.fx.rate(currency, self.reporting, self.day), True)]
            except FxError:
                # No direct rate: through the base of the rates file (it has USD -> X for every X).
                legs = []
                if currency != CONVERT_FROM:
                    legs.append((self.fx.rate(CONVERT_FROM, currency, self.day), False))
                if self.reporting != CONVERT_FROM:
                    legs.append((self.fx.rate(CONVERT_FROM, self.reporting, self.day), True))
                self._legs[currency] = legs
        return self._legs[currency]

    def __call__(self, amount: Decimal, currency: str) -> Decimal:
        if currency == self.reporting:
            return amount
        for conversion, multiply in self._path(currency):
            amount = amount * conversion.rate if multiply else amount / conversion.rate
        return amount

    def rates(self) -> list[dict[str, str]]:
        seen = {(c.base, c.quote, c.date): c for legs in self._legs.values() for c, _ in legs}
        return [c.to_json() for _, c in sorted(seen.items())]


class _Totals:
    """Exact sums per group key, in the reporting currency (and natively per currency)."""

    def __init__(self) -> None:
        self.groups: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
        self.native: dict[str, Decimal] = defaultdict(Decimal)
        self.total = Decimal(0)
        self.count = 0

    def add(self, amount: Decimal, reported: Decimal, groups: Mapping[str, str]) -> None:
        """``amount`` in the currency ``groups["currency"]``, ``reported`` in the reporting one."""
        self.total += reported
        self.count += 1
        self.native[groups["currency"]] += amount
        for name, key in groups.items():
            self.groups[name][key] += reported

    def to_json(self, reporting: str) -> dict[str, Any]:
        def money(value: Decimal, currency: str = reporting) -> str:
            return str(round_line(value, currency))

        out: dict[str, Any] = {"currency": reporting, "total": money(self.total), "count": self.count}
        for name, group in sorted(self.groups.items()):
            out[f"by_{name}"] = {key: money(value) for key, value in sorted(group.items())}
        out["native"] = {c: money(v, c) for c, v in sorted(self.native.items())}
        return out


def monthly_fee(tenant_id: str, tenant: Tenant, files: BillingFiles, day: date) -> Decimal:
    """What the tenant pays every month before usage and tax: its plan's base fee plus add-ons, unrounded."""
    matrix = files.matrix
    if not tenant.plan or tenant.plan not in matrix.plans:
        raise InvoiceError("plan", f"tenant {tenant_id}: plan {tenant.plan!r} is not in billing_matrix.yaml")
    currency = tenant.currency or ""
    try:
        fee, _ = price_in(matrix.plans[tenant.plan].base, currency, files.fx, day)
        for addon in matrix.addons_of(tenant.plan, tenant_id):
            fee += price_in(matrix.addons[addon].price, currency, files.fx, day)[0]
    except (PriceError, FxError) as exc:
        raise InvoiceError("price", f"tenant {tenant_id}: {exc}") from None
    return fee


def mrr(tenants: Mapping[str, Tenant], files: BillingFiles, day: date, reporting: str) -> dict[str, Any]:
    """Monthly recurring revenue on ``day``: every tenant with a plan, by region, jurisdiction, plan and currency.

    A tenant without a plan (not billed) is counted under ``unbilled``; one
    that cannot be priced raises :class:`InvoiceError` naming it: a report
    that leaves tenants out silently would be wrong.
    """
    convert = Converter(files.fx, reporting, day)
    totals = _Totals()
    unbilled = []
    for tenant_id, tenant in sorted(tenants.items()):
        if not tenant.plan:
            unbilled.append(tenant_id)
            continue
        fee = monthly_fee(tenant_id, tenant, files, day)
        currency = tenant.currency or ""
        try:
            reported = convert(fee, currency)
        except FxError as exc:
            raise InvoiceError("fx", f"tenant {tenant_id}: {exc}") from None
        totals.add(fee, reported, {"region": tenant.home or f"{tenant.residency} (no home region)",
                                   "jurisdiction": tenant.residency, "plan": tenant.plan, "currency": currency})
    return {"kind": "mrr", "date": day.isoformat(), **totals.to_json(reporting), "unbilled": unbilled,
            "rates": convert.rates()}


def revenue(documents: Iterable[Mapping[str, Any]], fx: FxRates, period: str, day: date,
            reporting: str, regions: Mapping[str, str]) -> dict[str, Any]:
    """Invoiced revenue of ``period`` net of tax and of credit notes, by region, plan and currency.

    ``documents`` are issued invoices and credit notes (any period: others
    are skipped); ``regions`` maps a document number to the region that
    keeps it. A credit note counts in the period of the invoice it credits.
    """
    convert = Converter(fx, reporting, day)
    totals = _Totals()
    for doc in documents:
        if doc.get("period") != period:
            continue
        currency = doc["currency"]
        net = Decimal(doc["subtotal"])
        plan = next((line["plan"] for line in doc["lines"] if line["kind"] == "plan"), "-")
        totals.add(net, convert(net, currency), {"region": regions.get(doc["number"], "-"), "plan": plan,
                                                 "currency": currency, "type": doc["type"]})
    return {"kind": "revenue", "period": period, "date": day.isoformat(), **totals.to_json(reporting),
            "rates": convert.rates()}
