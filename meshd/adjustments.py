"""Invoice adjustments: signed lines other plugins add to a tenant's invoice.

The billing plugin asks every plugin for adjustments through the
``meshd_invoice_adjustments`` hook when it makes an invoice. An adjustment is
either a percentage of the plan's base fee (how SLA credits are written in
contracts: "10 % of the monthly fee") or a fixed amount in the invoice's
currency, in minor units so no float ever holds money.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class InvoiceAdjustment:
    source: str
    """The plugin that made it (``sla``), shown on the invoice and in audits."""
    key: str
    """Stable identity for idempotency: the same key is applied once per tenant
    and period, however many times the period is billed (``sla:2026-10:eu-west-1``)."""
    description: str
    """What the customer reads on the line, already in the invoice's language."""
    percent_of_base: Decimal | None = None
    """Signed percentage of the plan's base fee for the period (``Decimal("-10")`` = a 10 % credit)."""
    amount_minor: int | None = None
    """Signed fixed amount in minor units of ``currency`` (cents, fils...)."""
    currency: str | None = None
    """ISO 4217 code of ``amount_minor``; must be the invoice's currency."""

    def __post_init__(self) -> None:
        if (self.percent_of_base is None) == (self.amount_minor is None):
            raise ValueError(f"adjustment {self.key}: give exactly one of percent_of_base and amount_minor")
        if self.amount_minor is not None and not self.currency:
            raise ValueError(f"adjustment {self.key}: amount_minor needs its currency")
        if self.percent_of_base is not None and not isinstance(self.percent_of_base, Decimal):
            raise TypeError(f"adjustment {self.key}: percent_of_base must be a Decimal")
