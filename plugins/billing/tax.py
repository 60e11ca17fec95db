"""The tax engine: (seller, customer, tax point date, net amount) -> tax lines.

Rules, all driven by ``tax_rates.yaml``:

- The customer's jurisdiction is ``COUNTRY-SUBDIVISION`` when the file has
  it (CA-QC, US-TX, ES-CN), else ``COUNTRY``; neither is an error (no
  invoice is made with a guessed tax).
- EU B2B reverse charge: a customer in an EU member state with a VAT ID
  that is well formed for ITS member state (the prefix names it), when that
  state is not the seller's: one 0 % line reading "Reverse charge" with the
  buyer's VAT ID. Same-country B2B and every B2C customer pay the customer
  country's rate.
- Every other jurisdiction: one line per tax (Canada: GST and PST/QST as two
  lines, HST as one); a tax the service is not subject to (SaaS in CA, FL)
  is a 0 line saying so; ``taxable_share`` taxes a part of the charge
  (Texas: 80 %).
- The rate is the one in force on the tax point date.

Each line's base and amount are rounded half-up to the currency's minor
unit (:func:`~.money.round_line`); the amount is the rounded base times the
rate, so anyone can recompute a line from what it prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from .money import round_line
from .taxrates import Jurisdiction, TaxRates

REVERSE_CHARGE = "Reverse charge"
HUNDRED = Decimal(100)


class TaxError(ValueError):
    """No tax can be computed: the jurisdiction or the rate on that date is not configured."""


@dataclass(frozen=True)
class Customer:
    country: str
    subdivision: str | None = None
    vat_id: str | None = None


@dataclass(frozen=True)
class TaxLine:
    name: str
    jurisdiction: str
    rate: Decimal
    """Percent."""
    base: Decimal
    amount: Decimal
    source: str | None = None
    secondary: bool = False
    note: str | None = None
    buyer_vat_id: str | None = None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"name": self.name, "jurisdiction": self.jurisdiction, "rate": str(self.rate),
                                  "base": str(self.base), "amount": str(self.amount)}
        for key in ("source", "note", "buyer_vat_id"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.secondary:
            out["source_secondary"] = True
        return out


def jurisdiction_of(rates: TaxRates, customer: Customer) -> tuple[str, Jurisdiction]:
    if customer.subdivision:
        code = f"{customer.country}-{customer.subdivision}"
        if code in rates.jurisdictions:
            return code, rates.jurisdictions[code]
    if customer.country in rates.jurisdictions:
        return customer.country, rates.jurisdictions[customer.country]
    wanted = f"{customer.country}-{customer.subdivision}" if customer.subdivision else customer.country
    raise TaxError(f"tax jurisdiction {wanted} is not configured in tax_rates.yaml")


def reverse_charge_applies(rates: TaxRates, seller_country: str, customer: Customer) -> bool:
    """True for an EU B2B customer with a well-formed VAT ID of another member state than the seller's."""
    vat_id = (customer.vat_id or "").replace(" ", "").upper()
    if not vat_id:
        return False
    state = vat_id[:2]
    member = rates.jurisdictions.get(state)
    if member is None or not member.eu_vat or not member.vat_id_ok(vat_id):
        return False
    return state != seller_country and customer.country in rates.eu_members()


def tax_lines(rates: TaxRates, seller_country: str, customer: Customer, tax_point: date,
              net: Decimal, currency: str) -> list[TaxLine]:
    """The tax lines of an invoice whose taxable net amount is ``net`` (already rounded)."""
    code, j = jurisdiction_of(rates, customer)
    if j.eu_vat and reverse_charge_applies(rates, seller_country, customer):
        name = j.taxes[0].name if j.taxes else "VAT"
        return [TaxLine(name, code, Decimal(0), round_line(net, currency), round_line(0, currency),
                        note=REVERSE_CHARGE, buyer_vat_id=(customer.vat_id or "").replace(" ", "").upper())]
    if not j.taxes:
        return [TaxLine("-", code, Decimal(0), round_line(net, currency), round_line(0, currency), note=j.note)]
    lines = []
    for tax in j.taxes:
        rate = tax.rate_on(tax_point)
        if rate is None:
            raise TaxError(f"{tax.name} of {code} has no rate in force on {tax_point.isoformat()} "
                           "in tax_rates.yaml")
        source = rates.sources[tax.source]
        if not tax.taxable:
            lines.append(TaxLine(tax.name, code, Decimal(0), round_line(0, currency), round_line(0, currency),
                                 tax.source, source.secondary, note=f"Not taxable in {code}"))
            continue
        base = round_line(net * tax.taxable_share / HUNDRED, currency)
        note = None if tax.taxable_share == HUNDRED else f"{tax.taxable_share}% of the charge is taxable"
        lines.append(TaxLine(tax.name, code, rate, base, round_line(base * rate / HUNDRED, currency),
                             tax.source, source.secondary, note=note))
    return lines
