"""An invoice or credit note, as issued (its JSON document), as a printable HTML page and as PDF.

The page is for a reader: every label comes from ``locales/<lang>/billing.yaml``
and every amount, number and date is formatted by Babel for the language
(``1.234,56 €`` in German). The document itself is never changed: it is
rendered as the daemon issued it, so the page shows the figures the ledger
holds. Amounts in the JSON are already rounded to the minor unit, so Babel
only lays them out and never rounds them (its rounding would be half-even).

The page is self-contained (inline CSS, system fonts, no network) so that it
prints, archives and converts to PDF the same everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from babel.dates import format_date, format_interval
from babel.numbers import format_currency, format_decimal, format_percent

from meshd.i18n import LANGUAGES, Translator
from meshd.pages import RenderError, html_to_pdf, page_environment, text_direction

from .tax import REVERSE_CHARGE

# RenderError is re-exported: callers catch it from the module whose render_pdf they call.
__all__ = ["RenderError", "render_html", "render_pdf"]

TEMPLATE = "invoice.html"


def document_language(doc: Mapping[str, Any], lang: str | None = None) -> str:
    """``lang`` when given, else the customer's language on the document, else English."""
    for candidate in (lang, (doc.get("customer") or {}).get("lang")):
        if candidate in LANGUAGES:
            return str(candidate)
    return "en"


def render_html(doc: Mapping[str, Any], lang: str | None = None) -> str:
    """The page of ``doc`` (an invoice or credit note as issued) in ``lang`` (default: the customer's)."""
    t = Translator(document_language(doc, lang))
    return page_environment("meshd_plugins.billing").get_template(TEMPLATE).render(page=Page(doc, t).context())


def render_pdf(html: str) -> bytes:
    """``html`` (a page of :func:`render_html`) laid out as an A4 PDF by WeasyPrint."""
    return html_to_pdf(html)


class Page:
    """What the template shows, formatted for one language: plain strings in, plain strings out."""

    def __init__(self, doc: Mapping[str, Any], t: Translator):
        self.doc = doc
        self.t = t
        self.currency = str(doc["currency"])
        # In right-to-left text a Latin currency symbol at the end of an amount ("1.00 US$")
        # would show as "$US": the "$" takes the paragraph's direction. A left-to-right mark
        # after the amount keeps the symbol as written; it adds nothing visible.
        self.money_end = "\u200e" if t.rtl else ""

    # ------------------------------------------------------------ formatting

    def money(self, value: str) -> str:
        return format_currency(Decimal(value), self.currency, locale=self.t.locale) + self.money_end

    def unit_price(self, value: str) -> str:
        # A unit price may be finer than the minor unit (USD 0.0006 per GB-hour):
        # show every digit it has rather than rounding it to cents.
        return format_currency(Decimal(value), self.currency, locale=self.t.locale, decimal_quantization=False) + self.money_end

    def number(self, value: str) -> str:
        return format_decimal(Decimal(value), locale=self.t.locale, decimal_quantization=False)

    def percent(self, value: str) -> str:
        return format_percent(Decimal(value) / 100, locale=self.t.locale, decimal_quantization=False)

    def day(self, value: str) -> str:
        return format_date(date.fromisoformat(value[:10]), format="long", locale=self.t.locale)

    def country(self, code: str | None) -> str:
        return str(self.t.locale.territories.get(code, code)) if code else ""

    def text_dir(self, text: str) -> str:
        """``ltr`` or ``rtl`` from the first letter of ``text`` (the page's direction without one).

        Names, addresses and IDs are data in any script: "Meshd Middle East W.L.L."
        set in an Arabic paragraph would move its final period to the left. Each such
        value gets its own direction (as a block: PDF engines honour ``dir`` on blocks).
        """
        return text_direction(text, self.t.rtl)

    def label(self, key: str, **kwargs: Any) -> str:
        return self.t(f"billing.invoice.{key}", **kwargs)

    # ------------------------------------------------------------ blocks

    def context(self) -> dict[str, Any]:
        doc, t = self.doc, self.t
        credit = doc.get("type") == "credit_note"
        return {
            "lang": t.lang, "dir": "rtl" if t.rtl else "ltr",
            "label": self.label, "text_dir": self.text_dir,
            "title": self.label("title_credit_note" if credit else "title"),
            "number": doc.get("number") or self.label("draft"),
            "facts": self.facts(),
            "seller": self.seller(),
            "customer": self.customer(),
            "credits": self.label("credits", number=doc["credits"]) if credit else None,
            "reason": doc.get("reason") if credit else None,
            "lines": [self.line(line) for line in doc["lines"]],
            "taxes": [self.tax(line) for line in doc["tax_lines"]],
            "totals": [(self.label("subtotal"), self.money(doc["subtotal"])),
                       (self.label("tax_total"), self.money(doc["tax_total"]))],
            "total": (self.label("total"), self.money(doc["total"])),
            "fx": [self.fx(c) for c in doc.get("fx") or []],
            "fx_sources": [self.label("fx_source", source=s) for s in self.fx_sources()],
        }

    def facts(self) -> list[tuple[str, str]]:
        """Number and dates, as (label, value) rows of the header."""
        doc = self.doc
        issued = doc.get("issued_at")
        rows = [(self.label("number"), doc.get("number") or self.label("draft"))]
        if issued:
            rows.append((self.label("issue_date"), self.day(issued)))
        period = format_interval(date.fromisoformat(doc["period_start"]), date.fromisoformat(doc["period_end"]),
                                 skeleton="yMMMd", locale=self.t.locale)
        rows.append((self.label("period"), period))
        rows.append((self.label("tax_point"), self.day(doc["tax_point"])))
        return rows

    def seller(self) -> dict[str, Any]:
        seller = self.doc["seller"]
        return {"name": seller["name"], "address": list(seller.get("address") or []),
                "rows": [(self.label("tax_number"), seller.get("tax_number") or "")]}

    def customer(self) -> dict[str, Any]:
        customer = self.doc["customer"]
        country = self.country(customer.get("country"))
        if customer.get("subdivision"):
            country = f"{country} ({customer['subdivision']})"
        rows = [(self.label("country"), country)]
        if customer.get("vat_id"):
            rows.append((self.label("vat_id"), customer["vat_id"]))
        return {"name": customer["tenant"], "address": [], "rows": rows}

    def meter(self, meter: str) -> str:
        key = f"billing.invoice.meter.{meter}"
        return self.t(key) if self.t.has(key) else meter  # a meter the catalog does not name shows its id

    def line(self, line: Mapping[str, Any]) -> dict[str, Any]:
        """One row of the lines table: description (with details under it), quantity, included, unit price, amount."""
        kind = line["kind"]
        details: list[str] = []
        included = ""
        if kind == "plan":
            description = self.label("plan", plan=line["plan"])
        elif kind == "addon":
            description = self.label("addon", addon=line["addon"])
        else:
            description = self.label("overage", meter=self.meter(line["meter"]))
            details.append(self.label("used", used=self.number(line["used"])))
            if line.get("tier"):
                details.append(self.tier(line["tier"]))
            included = self.number(line["included"])
        unit = self.unit_price(line["unit_price"])
        per = line.get("per")
        if per and Decimal(per) != 1:
            unit = f"{unit} {self.label('per', per=self.number(per))}"
        if line.get("fx"):
            details.append(self.converted(line["fx"]))
        return {"description": description, "details": details, "quantity": self.number(line["quantity"]),
                "included": included, "unit_price": unit, "amount": self.money(line["amount"])}

    def tier(self, tier: Mapping[str, Any]) -> str:
        start = self.number(tier["from"])
        if tier.get("up_to") is None:
            return self.label("tier_above", start=start)
        return self.label("tier_range", start=start, end=self.number(tier["up_to"]))

    def converted(self, fx: Mapping[str, Any]) -> str:
        return self.label("converted", base=fx["from"], rate=self.number(fx["rate"]), date=self.day(fx["date"]))

    def tax(self, line: Mapping[str, Any]) -> dict[str, Any]:
        return {"name": line["name"], "rate": self.percent(line["rate"]), "base": self.money(line["base"]),
                "amount": self.money(line["amount"]), "note": self.tax_note(line)}

    def tax_note(self, line: Mapping[str, Any]) -> str:
        """The tax line's note in the reader's language.

        An issued document keeps the English note the tax rules wrote; the
        notes those rules write are recognised and translated here, and a
        note from tax_rates.yaml (free text) is shown as written.
        """
        note = line.get("note") or ""
        if note == REVERSE_CHARGE:
            return self.label("reverse_charge", vat_id=line.get("buyer_vat_id") or "")
        if m := re.fullmatch(r"Not taxable in (\S+)", note):
            return self.label("not_taxable", jurisdiction=m.group(1))
        if m := re.fullmatch(r"(\d+(?:\.\d+)?)% of the charge is taxable", note):
            return self.label("taxable_share", share=self.percent(m.group(1)))
        return str(note)

    def fx(self, conversion: Mapping[str, Any]) -> str:
        return self.label("fx_rate", base=conversion["from"], quote=conversion["to"],
                          rate=self.number(conversion["rate"]), date=self.day(conversion["date"]))

    def fx_sources(self) -> list[str]:
        return sorted({str(c["source"]) for c in self.doc.get("fx") or [] if c.get("source")})
