"""An invoice from a tenant's metered usage: base plan, add-ons, overage per meter, tax, totals.

:func:`compute` is pure: the tenant, the usage totals (as the metering
plugin's federation-wide query returns them), the billing files and the
period in, a JSON-ready document out, with no number yet (numbering is
:mod:`.numbering`). Every line is rounded once, half-up, when it is made
(:mod:`.money`); the subtotal, the tax total and the total are sums of
rounded lines.
"""

from __future__ import annotations

from calendar import monthrange
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from meshd.adjustments import InvoiceAdjustment
from meshd.tenants import Tenant

from .fx import Conversion, FxError, FxRates
from .matrix import BillingMatrix, Overage, PriceError, price_in
from .money import MoneyError, exact, minor_unit, round_line, total
from .tax import Customer, TaxError, tax_lines
from .taxrates import TaxRates

FORMAT = 1


class InvoiceError(ValueError):
    """The invoice cannot be made: ``field`` names what is missing or wrong."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class BillingFiles:
    matrix: BillingMatrix
    taxes: TaxRates
    fx: FxRates


def month(period: str) -> tuple[date, date]:
    """First and last day of a ``YYYY-MM`` period."""
    try:
        year, mon = (int(p) for p in period.split("-"))
        first = date(year, mon, 1)
    except ValueError:
        raise InvoiceError("period", f"{period!r} is not a month written YYYY-MM") from None
    return first, date(year, mon, monthrange(year, mon)[1])


def check_closed(period: str, now: datetime) -> None:
    _, last = month(period)
    end = datetime(last.year, last.month, last.day, tzinfo=UTC).timestamp() + 86400
    if now.timestamp() < end:
        raise InvoiceError("period", f"{period} is not closed yet (it ends {last.isoformat()} 24:00 UTC)")


def usage_values(usage: Mapping[str, Any]) -> dict[str, Decimal]:
    """The exact totals of a metering query answer (``GET /v1/usage``); an incomplete answer is refused."""
    if not usage.get("complete"):
        raise InvoiceError("usage", "the usage totals are incomplete (regions missing: "
                           f"{', '.join(usage.get('missing') or []) or '?'}); an invoice is never made from less "
                           "than the truth")
    out = {}
    for meter, m in (usage.get("meters") or {}).items():
        if not m.get("exact", True):
            raise InvoiceError(f"usage.{meter}", "the total is an upper bound, not an exact count")
        try:
            out[meter] = exact(m.get("value") or "0", f"usage of {meter}")
        except MoneyError as exc:  # a LATEST meter may hold a string: it cannot be billed
            raise InvoiceError(f"usage.{meter}", str(exc)) from None
    return out


def _money(amount: Decimal) -> str:
    return str(amount)


def _overage_lines(meter: str, used: Decimal, included: Decimal, over: Overage, currency: str,
                   fx: FxRates, day: date) -> tuple[list[dict[str, Any]], list[Conversion]]:
    excess = max(Decimal(0), used - included)
    tiers = [(None, over.price)] if over.price is not None else [(t.up_to, t.price) for t in over.tiers or []]
    lines, conversions = [], []
    floor = Decimal(0)
    for up_to, price in tiers:
        assert price is not None
        quantity = excess - floor if up_to is None else max(Decimal(0), min(excess, up_to) - floor)
        if quantity <= 0 and lines:
            break
        unit, conversion = price_in(price, currency, fx, day)
        if conversion is not None:
            conversions.append(conversion)
        line: dict[str, Any] = {
            "kind": "overage", "meter": meter, "used": str(used), "included": str(included),
            "quantity": str(quantity), "per": str(over.per), "unit_price": str(unit),
            "amount": _money(round_line(quantity / over.per * unit, currency)),
        }
        if len(tiers) > 1:
            line["tier"] = {"from": str(floor), "up_to": None if up_to is None else str(up_to)}
        if conversion is not None:
            line["fx"] = conversion.to_json()
        lines.append(line)
        if up_to is None or excess <= up_to:
            break
        floor = up_to
    return lines, conversions


def adjustment_lines(adjustments: Sequence[InvoiceAdjustment], base: Decimal, charged: Decimal,
                     currency: str) -> list[dict[str, Any]]:
    """Lines for other plugins' adjustments (before tax): each ``key`` once, in key order.

    A percentage applies to the plan's base fee; a fixed amount must be in
    the invoice's currency. Credits never take the subtotal below zero (a
    service credit cannot exceed what was charged): the last ones are cut
    down and marked ``capped``.
    """
    lines: list[dict[str, Any]] = []
    seen: set[str] = set()
    room = charged
    for adj in sorted(adjustments, key=lambda a: (a.source, a.key)):
        if adj.key in seen:
            continue
        seen.add(adj.key)
        if adj.percent_of_base is not None:
            amount = round_line(base * adj.percent_of_base / 100, currency)
        else:
            if adj.currency != currency:
                raise InvoiceError("adjustment", f"{adj.source} adjustment {adj.key} is in {adj.currency}, "
                                                 f"the invoice in {currency}")
            amount = round_line(Decimal(adj.amount_minor or 0).scaleb(-minor_unit(currency)), currency)
        line = {"kind": "adjustment", "source": adj.source, "key": adj.key, "description": adj.description,
                "quantity": "1", "amount": _money(amount)}
        if adj.percent_of_base is not None:
            line["percent_of_base"] = str(adj.percent_of_base)
        if amount < 0 and -amount > room:
            amount = -room
            line.update({"amount": _money(amount), "capped": True})
        room += amount
        lines.append(line)
    return lines


def compute(tenant_id: str, tenant: Tenant, period: str, usage: Mapping[str, Decimal],
            files: BillingFiles, adjustments: Sequence[InvoiceAdjustment] = ()) -> dict[str, Any]:
    """The invoice document (without a number) of ``tenant`` for ``period``; :class:`InvoiceError` if impossible."""
    matrix = files.matrix
    first, tax_point = month(period)
    if not tenant.plan or tenant.plan not in matrix.plans:
        raise InvoiceError("plan", f"tenant {tenant_id}: plan {tenant.plan!r} is not in billing_matrix.yaml "
                                   f"(known: {', '.join(matrix.plans)})")
    currency = tenant.currency or ""
    if currency not in matrix.currencies:
        raise InvoiceError("currency", f"tenant {tenant_id}: currency {currency or None!r} is not in "
                                       f"billing_matrix.yaml currencies ({', '.join(matrix.currencies)})")
    if not tenant.country:
        raise InvoiceError("country", f"tenant {tenant_id} has no country: tax cannot be determined")
    seller = matrix.entity_for(tenant.residency)
    if seller is None:
        raise InvoiceError("entity", f"no seller entity for jurisdiction {tenant.residency} in billing_matrix.yaml")
    entity_key, entity = seller
    plan = matrix.plans[tenant.plan]
    try:
        minor_unit(currency)
        lines: list[dict[str, Any]] = [{
            "kind": "plan", "plan": tenant.plan, "quantity": "1", "unit_price": str(plan.base[currency]),
            "amount": _money(round_line(plan.base[currency], currency)),
        }]
        conversions: list[Conversion] = []
        for addon in matrix.addons_of(tenant.plan, tenant_id):
            unit, conversion = price_in(matrix.addons[addon].price, currency, files.fx, tax_point)
            line = {"kind": "addon", "addon": addon, "quantity": "1", "unit_price": str(unit),
                    "amount": _money(round_line(unit, currency))}
            if conversion is not None:
                line["fx"] = conversion.to_json()
                conversions.append(conversion)
            lines.append(line)
        for meter in sorted(set(plan.included) | set(plan.overage) | set(usage)):
            if meter not in plan.overage:
                continue  # metered but not billed on this plan (within what is included, or free)
            more, convs = _overage_lines(meter, usage.get(meter, Decimal(0)), plan.included.get(meter, Decimal(0)),
                                         plan.overage[meter], currency, files.fx, tax_point)
            lines += more
            conversions += convs
        charged = total([Decimal(line["amount"]) for line in lines], currency)
        lines += adjustment_lines(adjustments, round_line(plan.base[currency], currency), charged, currency)
        subtotal = total([Decimal(line["amount"]) for line in lines], currency)
        customer = Customer(tenant.country, tenant.subdivision, tenant.vat_id)
        taxes = tax_lines(files.taxes, entity.country, customer, tax_point, subtotal, currency)
    except TaxError as exc:
        raise InvoiceError("tax", f"tenant {tenant_id}: {exc}") from None
    except FxError as exc:
        raise InvoiceError("fx", f"tenant {tenant_id}: {exc}") from None
    except (PriceError, MoneyError) as exc:
        raise InvoiceError("price", f"tenant {tenant_id}: {exc}") from None
    tax_total = total([t.amount for t in taxes], currency)
    fx = {f"{c.base}->{c.quote}@{c.date.isoformat()}": c.to_json() for c in conversions}
    return {
        "format": FORMAT,
        "type": "invoice",
        "number": None,
        "seller": entity.public(entity_key),
        "customer": {"tenant": tenant_id, "country": tenant.country, "subdivision": tenant.subdivision,
                     "vat_id": tenant.vat_id, "lang": tenant.lang},
        "residency": tenant.residency,
        "period": period,
        "period_start": first.isoformat(),
        "period_end": tax_point.isoformat(),
        "tax_point": tax_point.isoformat(),
        "currency": currency,
        "lines": lines,
        "subtotal": _money(subtotal),
        "tax_lines": [t.to_json() for t in taxes],
        "tax_total": _money(tax_total),
        "total": _money(total([subtotal, tax_total], currency)),
        "fx": sorted(fx.values(), key=lambda c: (c["from"], c["to"], c["date"])),
    }


def credit_note(invoice: Mapping[str, Any], reason: str) -> dict[str, Any]:
    """A credit note that cancels ``invoice`` in full: every line and tax line negated, referencing it."""
    if invoice.get("type") != "invoice" or not invoice.get("number"):
        raise InvoiceError("invoice", "only an issued invoice can be credited")
    if not reason.strip():
        raise InvoiceError("reason", "a credit note needs a reason")

    def neg(value: str) -> str:
        return str(-Decimal(value)) if Decimal(value) else value

    note = {k: v for k, v in invoice.items() if k not in ("lines", "tax_lines", "number", "issued_at")}
    note.update({
        "type": "credit_note", "number": None, "credits": invoice["number"], "reason": reason,
        "lines": [{**line, "amount": neg(line["amount"])} for line in invoice["lines"]],
        "tax_lines": [{**t, "base": neg(t["base"]), "amount": neg(t["amount"])} for t in invoice["tax_lines"]],
        "subtotal": neg(invoice["subtotal"]), "tax_total": neg(invoice["tax_total"]), "total": neg(invoice["total"]),
    })
    return note
