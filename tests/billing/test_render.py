"""Invoices as HTML in the reader's language and as PDF; Arabic laid out right to left in a real browser."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from html import unescape
from pathlib import Path

import pytest
from babel.numbers import format_currency

from meshd.config import load_model_file
from meshd.i18n import LANGUAGES, Translator, catalog
from meshd.tenants import Tenant, TenantFile
from meshd_plugins.billing.fx import load_fx
from meshd_plugins.billing.invoice import BillingFiles, compute, credit_note
from meshd_plugins.billing.matrix import load_matrix
from meshd_plugins.billing.render import render_html, render_pdf
from meshd_plugins.billing.taxrates import load_tax_rates

ROOT = Path(__file__).resolve().parents[2]
ETC = ROOT / "etc"
METERS = ["api_requests", "storage_gb_hours", "active_users"]
USAGE = {"api_requests": Decimal(12_000_000), "storage_gb_hours": Decimal(40_000), "active_users": Decimal(130)}
ISSUED_AT = "2026-11-02T09:30:00+00:00"


@pytest.fixture(scope="module")
def files() -> BillingFiles:
    return BillingFiles(load_matrix(ETC / "billing_matrix.yaml", METERS), load_tax_rates(ETC / "tax_rates.yaml"),
                        load_fx(ETC / "fx_rates.yaml"))


@pytest.fixture(scope="module")
def tenants() -> dict[str, Tenant]:
    sample = load_model_file(ETC / "tenants.yaml", TenantFile).tenants
    # The sample directory has no GBP or AED customer, nor a Spanish-speaking one:
    # variants of sample tenants fill those in.
    return {**sample,
            "brolly-gb": sample["bistro-fr"].model_copy(update={"country": "GB", "currency": "GBP", "lang": "en"}),
            "tapas-es": sample["bistro-fr"].model_copy(update={"country": "ES", "lang": "es"}),
            "souk-ae": sample["souk-bh"].model_copy(update={"country": "AE", "currency": "AED"})}


def issue(doc: dict, number: str) -> dict:
    return {**doc, "number": number, "issued_at": ISSUED_AT}


def invoice(files: BillingFiles, tenants: dict[str, Tenant], tenant: str, number: str = "EU-000042") -> dict:
    return issue(compute(tenant, tenants[tenant], "2026-10", USAGE, files), number)


def amounts(doc: dict) -> Iterator[Decimal]:
    for key in ("lines", "tax_lines"):
        for line in doc[key]:
            yield Decimal(line["amount"])
    for key in ("subtotal", "tax_total", "total"):
        yield Decimal(doc[key])


def page_text(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", " ", html))


# ---------------------------------------------------------------- HTML


@pytest.mark.parametrize(("tenant", "lang"), [("acme-eu", "de"), ("bistro-fr", "fr"), ("tapas-es", "es"),
                                              ("globex-us", "en"), ("souk-ae", "ar"), ("maple-ca", "fr"),
                                              ("brolly-gb", "en"), ("lion-sg", "en"), ("souk-bh", "ar")])
def test_every_amount_is_formatted_for_the_language(files: BillingFiles, tenants: dict, tenant: str,
                                                    lang: str) -> None:
    doc = invoice(files, tenants, tenant)
    html = render_html(doc)  # the customer's language
    assert f'<html lang="{lang}" dir="{"rtl" if lang == "ar" else "ltr"}">' in html
    text = page_text(html)
    locale = Translator(lang).locale
    for amount in amounts(doc):
        assert format_currency(amount, doc["currency"], locale=locale) in text, amount
    assert Translator(lang)("billing.invoice.total") in text
    # No raw JSON figure leaks through unformatted (the total as "1234.56" next to a currency code).
    assert f">{doc['total']}<" not in html


def test_german_amounts_use_comma_decimals_and_the_euro_sign_after(files: BillingFiles, tenants: dict) -> None:
    doc = invoice(files, tenants, "acme-eu")
    assert Decimal(doc["total"]) > 1000
    text = page_text(render_html(doc, "de"))
    integer, cents = doc["total"].split(".")
    assert f"{int(integer):,}".replace(",", ".") + f",{cents}\xa0€" in text
    assert "Steuerschuldnerschaft des Leistungsempfängers" in text and "DE123456789" in text  # reverse charge


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_label_is_translated(lang: str) -> None:
    english = {k for k in catalog("en") if k.startswith("billing.invoice.")}
    assert english and all(Translator(lang).has(key) for key in english), lang


def test_a_tenant_name_is_data_not_markup(files: BillingFiles, tenants: dict) -> None:
    doc = invoice(files, tenants, "bistro-fr")
    doc["customer"]["tenant"] = '<script>alert("x")</script> & Sons'
    html = render_html(doc, "en")
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Sons" in html


def test_a_credit_note_names_the_invoice_and_the_reason(files: BillingFiles, tenants: dict) -> None:
    note = issue(credit_note(invoice(files, tenants, "bistro-fr", "EU-000007"), "Billed twice <oops>"), "EU-000008")
    text = page_text(render_html(note, "fr"))
    assert "Avoir sur la facture EU-000007" in text and "Billed twice <oops>" in text
    assert format_currency(Decimal(note["total"]), "EUR", locale="fr_FR") in text and note["total"].startswith("-")


def test_a_converted_price_states_its_rate_and_date(files: BillingFiles, tenants: dict) -> None:
    doc = invoice(files, tenants, "lion-sg", "SG-000001")
    text = page_text(render_html(doc, "en"))
    assert "1 USD = 1.3398 SGD, rate of October 30, 2026" in text
    assert "converted from USD at 1.3398 (October 30, 2026)" in text


# ---------------------------------------------------------------- a real browser


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "chromium is not installed (apt-get install chromium): the RTL layout is checked in a real browser"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path


# Runs in the page after it is laid out (a script at the end of <body> runs once everything
# above it is parsed; getBoundingClientRect forces layout) and writes what it measured into
# the DOM, which --dump-dom prints.
MEASURE = """
<script>
const box = el => { const r = el.getBoundingClientRect(); return {left: r.left, right: r.right}; };
const rows = [...document.querySelectorAll("table.lines tbody tr")].map(tr => ({
  description: box(tr.querySelector("td.desc")),
  amount: box(tr.querySelector("td.amount .num")),
}));
const out = document.createElement("pre");
out.id = "measured";
out.textContent = JSON.stringify({
  direction: getComputedStyle(document.querySelector("table.lines")).direction,
  rows: rows,
  amounts: [...document.querySelectorAll("td.amount .num")].map(box),
});
document.body.appendChild(out);
</script>
"""


def measure_in_browser(html: str, tmp_path: Path) -> dict:
    page = tmp_path / "invoice.html"
    page.write_text(html.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    run = subprocess.run([chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1000,1400",
                          f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="measured">(.*?)</pre>', run.stdout, re.S)
    assert found, f"chromium printed no measurement (exit {run.returncode}): {run.stderr[-2000:]}"
    return json.loads(unescape(found.group(1)))


@pytest.mark.parametrize(("lang", "rtl"), [("ar", True), ("en", False)])
def test_amounts_sit_at_the_end_of_the_reading_direction(files: BillingFiles, tenants: dict, lang: str, rtl: bool,
                                                         tmp_path: Path) -> None:
    measured = measure_in_browser(render_html(invoice(files, tenants, "souk-ae", "BH-000003"), lang), tmp_path)
    assert measured["direction"] == ("rtl" if rtl else "ltr")
    assert len(measured["rows"]) >= 4
    for row in measured["rows"]:
        if rtl:  # the amount is left of the description
            assert row["amount"]["right"] < row["description"]["left"], row
        else:
            assert row["amount"]["left"] > row["description"]["right"], row
    # Every amount, lines, taxes and totals, ends on one edge: right in LTR, left in RTL.
    edges = [a["left" if rtl else "right"] for a in measured["amounts"]]
    assert len(edges) >= 7 and max(edges) - min(edges) < 0.5, measured["amounts"]


# ---------------------------------------------------------------- PDF


def test_a_normal_invoice_is_a_one_page_pdf_with_its_number_and_total(files: BillingFiles, tenants: dict) -> None:
    from pypdf import PdfReader

    doc = invoice(files, tenants, "maple-ca", "CA-000123")
    pdf = render_pdf(render_html(doc, "en"))
    assert pdf.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 1
    text = reader.pages[0].extract_text()
    assert "CA-000123" in text
    assert format_currency(Decimal(doc["total"]), "CAD", locale="en_US") in text


# ---------------------------------------------------------------- the command line


def test_a_pdf_is_not_written_to_a_terminal(tmp_path: Path) -> None:
    main, terminal = os.openpty()  # a real terminal for the command's standard output
    try:
        run = subprocess.run([sys.executable, "-m", "meshd.cli", "--lang", "en", "invoice", "--tenant", "bistro-fr",
                              "--period", "2026-10", "--format", "pdf"], stdout=terminal, stderr=subprocess.PIPE,
                             text=True, cwd=tmp_path, timeout=60)
    finally:
        os.close(terminal)
        os.close(main)
    # refused before any daemon is looked for: no config is needed to be told
    assert run.returncode == 2, run.stderr
    assert "write it to a file with --out FILE" in run.stderr


def test_the_tax_rules_notes_are_translated(files: BillingFiles, tenants: dict) -> None:
    texas = tenants["globex-us"].model_copy(update={"subdivision": "TX"})
    doc = issue(compute("globex-tx", texas, "2026-10", USAGE, files), "US-000001")
    assert doc["tax_lines"][0]["note"] == "80% of the charge is taxable"
    assert "80\xa0% du montant est taxable" in page_text(render_html(doc, "fr"))
