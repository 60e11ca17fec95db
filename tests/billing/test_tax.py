"""The tax table: every jurisdiction of tax_rates.yaml and both sides of every dated change."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from meshd_plugins.billing.tax import REVERSE_CHARGE, Customer, TaxError, tax_lines
from meshd_plugins.billing.taxrates import TaxRates, load_tax_rates

ROOT = Path(__file__).resolve().parents[2]
D = date.fromisoformat


@pytest.fixture(scope="module")
def rates() -> TaxRates:
    return load_tax_rates(ROOT / "etc" / "tax_rates.yaml")


# (seller country, customer country, subdivision, VAT ID, tax point, net, currency,
#  expected [(tax name, rate %, base, amount, note or None)])
CASES = {
    # EU, B2C: the customer country's rate on the tax point date, both sides of each change
    "DE 16% last day": ("IE", "DE", None, None, "2020-12-31", "100.00", "EUR", [("VAT", "16", "100.00", "16.00", None)]),
    "DE 19% first day": ("IE", "DE", None, None, "2021-01-01", "100.00", "EUR", [("VAT", "19", "100.00", "19.00", None)]),
    "DE 16% first day": ("IE", "DE", None, None, "2020-07-01", "100.00", "EUR", [("VAT", "16", "100.00", "16.00", None)]),
    "FR 20% first day": ("IE", "FR", None, None, "2014-01-01", "100.00", "EUR", [("TVA", "20", "100.00", "20.00", None)]),
    "FR 20%": ("IE", "FR", None, None, "2026-10-31", "100.00", "EUR", [("TVA", "20", "100.00", "20.00", None)]),
    "IE 21% first day": ("IE", "IE", None, None, "2020-09-01", "100.00", "EUR", [("VAT", "21", "100.00", "21.00", None)]),
    "IE 21% last day": ("IE", "IE", None, None, "2021-02-28", "100.00", "EUR", [("VAT", "21", "100.00", "21.00", None)]),
    "IE 23% first day": ("IE", "IE", None, None, "2021-03-01", "100.00", "EUR", [("VAT", "23", "100.00", "23.00", None)]),
    "ES 21%": ("IE", "ES", None, None, "2026-10-31", "100.00", "EUR", [("IVA", "21", "100.00", "21.00", None)]),
    "ES Canary Islands outside VAT": ("IE", "ES", "CN", None, "2026-10-31", "100.00", "EUR",
                                      [("-", "0", "100.00", "0.00", "Outside the scope of EU VAT (Canary Islands)")]),
    "ES other subdivision is mainland": ("IE", "ES", "MD", None, "2026-10-31", "100.00", "EUR",
                                         [("IVA", "21", "100.00", "21.00", None)]),
    "NL 21%": ("IE", "NL", None, None, "2026-10-31", "100.00", "EUR", [("BTW", "21", "100.00", "21.00", None)]),
    "IT 22%": ("IE", "IT", None, None, "2026-10-31", "100.00", "EUR", [("IVA", "22", "100.00", "22.00", None)]),
    "FI 24% last day": ("IE", "FI", None, None, "2024-08-31", "100.00", "EUR", [("ALV", "24", "100.00", "24.00", None)]),
    "FI 25.5% first day": ("IE", "FI", None, None, "2024-09-01", "100.00", "EUR", [("ALV", "25.5", "100.00", "25.50", None)]),
    "SK 20% last day": ("IE", "SK", None, None, "2024-12-31", "100.00", "EUR", [("DPH", "20", "100.00", "20.00", None)]),
    "SK 23% first day": ("IE", "SK", None, None, "2025-01-01", "100.00", "EUR", [("DPH", "23", "100.00", "23.00", None)]),
    "EE 22% last day": ("IE", "EE", None, None, "2025-06-30", "100.00", "EUR", [("KM", "22", "100.00", "22.00", None)]),
    "EE 24% first day": ("IE", "EE", None, None, "2025-07-01", "100.00", "EUR", [("KM", "24", "100.00", "24.00", None)]),
    "RO 19% last day": ("IE", "RO", None, None, "2025-07-31", "100.00", "EUR", [("TVA", "19", "100.00", "19.00", None)]),
    "RO 21% first day": ("IE", "RO", None, None, "2025-08-01", "100.00", "EUR", [("TVA", "21", "100.00", "21.00", None)]),
    # EU, B2B: reverse charge only with a well-formed VAT ID of another member state than the seller's
    "DE B2B from IE: reverse charge": ("IE", "DE", None, "DE123456789", "2026-10-31", "100.00", "EUR",
                                      [("VAT", "0", "100.00", "0.00", REVERSE_CHARGE)]),
    "FR B2B from IE: reverse charge": ("IE", "FR", None, "FR12345678901", "2026-10-31", "250.00", "EUR",
                                      [("TVA", "0", "250.00", "0.00", REVERSE_CHARGE)]),
    "ES B2B from IE: reverse charge": ("IE", "ES", None, "ESA1234567B", "2026-10-31", "100.00", "EUR",
                                      [("IVA", "0", "100.00", "0.00", REVERSE_CHARGE)]),
    "NL B2B from IE: reverse charge": ("IE", "NL", None, "NL123456789B01", "2026-10-31", "100.00", "EUR",
                                      [("BTW", "0", "100.00", "0.00", REVERSE_CHARGE)]),
    "IT B2B from IE: reverse charge": ("IE", "IT", None, "IT12345678901", "2026-10-31", "100.00", "EUR",
                                      [("IVA", "0", "100.00", "0.00", REVERSE_CHARGE)]),
    "FI B2B from IE: reverse charge": ("IE", "FI", None, "FI12345678", "2026-10-31", "100.00", "EUR",
                                      [("ALV", "0", "100.00", "0.00", REVERSE_CHARGE)]),
    "SK B2B from IE: reverse charge": ("IE", "SK", None, "SK1234567890", "2026-10-31", "100.00", "EUR",
                                      [("DPH", "0", "100.00", "0.00", REVERSE_CHARGE)]),
    "EE B2B from IE: reverse charge": ("IE", "EE", None, "EE123456789", "2026-10-31", "100.00", "EUR",
                                      [("KM", "0", "100.00", "0.00", REVERSE_CHARGE)]),
    "RO B2B from IE: reverse charge": ("IE", "RO", None, "RO1234567", "2026-10-31", "100.00", "EUR",
                                      [("TVA", "0", "100.00", "0.00", REVERSE_CHARGE)]),
    "IE B2B from DE: reverse charge": ("DE", "IE", None, "IE1234567T", "2026-10-31", "100.00", "EUR",
                                      [("VAT", "0", "100.00", "0.00", REVERSE_CHARGE)]),
    "same-country B2B pays VAT (IE)": ("IE", "IE", None, "IE1234567T", "2026-10-31", "100.00", "EUR",
                                       [("VAT", "23", "100.00", "23.00", None)]),
    "same-country B2B pays VAT (DE)": ("DE", "DE", None, "DE123456789", "2026-10-31", "100.00", "EUR",
                                       [("VAT", "19", "100.00", "19.00", None)]),
    "malformed VAT ID pays VAT": ("IE", "DE", None, "DE12345", "2026-10-31", "100.00", "EUR",
                                  [("VAT", "19", "100.00", "19.00", None)]),
    "non-EU VAT ID pays VAT": ("IE", "DE", None, "GB123456789", "2026-10-31", "100.00", "EUR",
                               [("VAT", "19", "100.00", "19.00", None)]),
    "Canary Islands B2B: outside VAT, no reverse charge": (
        "IE", "ES", "CN", "ESA1234567B", "2026-10-31", "100.00", "EUR",
        [("-", "0", "100.00", "0.00", "Outside the scope of EU VAT (Canary Islands)")]),
    # UK
    "GB 20%": ("IE", "GB", None, None, "2026-10-31", "100.00", "GBP", [("VAT", "20", "100.00", "20.00", None)]),
    "GB business pays UK VAT": ("IE", "GB", None, "GB123456789", "2026-10-31", "100.00", "GBP",
                                [("VAT", "20", "100.00", "20.00", None)]),
    # Canada: GST alone, GST + PST/RST/QST as two lines, HST alone
    "CA-AB GST": ("CA", "CA", "AB", None, "2026-10-31", "100.00", "CAD", [("GST", "5", "100.00", "5.00", None)]),
    "CA-NT GST": ("CA", "CA", "NT", None, "2026-10-31", "100.00", "CAD", [("GST", "5", "100.00", "5.00", None)]),
    "CA-NU GST": ("CA", "CA", "NU", None, "2026-10-31", "100.00", "CAD", [("GST", "5", "100.00", "5.00", None)]),
    "CA-YT GST": ("CA", "CA", "YT", None, "2026-10-31", "100.00", "CAD", [("GST", "5", "100.00", "5.00", None)]),
    "CA-BC GST+PST": ("CA", "CA", "BC", None, "2026-10-31", "100.00", "CAD",
                      [("GST", "5", "100.00", "5.00", None), ("PST", "7", "100.00", "7.00", None)]),
    "CA-SK GST+PST": ("CA", "CA", "SK", None, "2026-10-31", "100.00", "CAD",
                      [("GST", "5", "100.00", "5.00", None), ("PST", "6", "100.00", "6.00", None)]),
    "CA-MB GST+RST": ("CA", "CA", "MB", None, "2026-10-31", "100.00", "CAD",
                      [("GST", "5", "100.00", "5.00", None), ("RST", "7", "100.00", "7.00", None)]),
    "CA-QC GST+QST, QST rounded half-up": ("CA", "CA", "QC", None, "2026-10-31", "100.00", "CAD",
                                           [("GST", "5", "100.00", "5.00", None),
                                            ("QST", "9.975", "100.00", "9.98", None)]),
    "CA-ON HST": ("CA", "CA", "ON", None, "2026-10-31", "100.00", "CAD", [("HST", "13", "100.00", "13.00", None)]),
    "CA-NB HST": ("CA", "CA", "NB", None, "2026-10-31", "100.00", "CAD", [("HST", "15", "100.00", "15.00", None)]),
    "CA-NL HST": ("CA", "CA", "NL", None, "2026-10-31", "100.00", "CAD", [("HST", "15", "100.00", "15.00", None)]),
    "CA-PE HST": ("CA", "CA", "PE", None, "2026-10-31", "100.00", "CAD", [("HST", "15", "100.00", "15.00", None)]),
    "CA-NS HST 15% last day": ("CA", "CA", "NS", None, "2025-03-31", "100.00", "CAD",
                               [("HST", "15", "100.00", "15.00", None)]),
    "CA-NS HST 14% first day": ("CA", "CA", "NS", None, "2025-04-01", "100.00", "CAD",
                                [("HST", "14", "100.00", "14.00", None)]),
    # Middle East and Asia
    "AE 5% first day": ("AE", "AE", None, None, "2018-01-01", "100.00", "AED", [("VAT", "5", "100.00", "5.00", None)]),
    "BH 5% first day": ("BH", "BH", None, None, "2019-01-01", "100.00", "USD", [("VAT", "5", "100.00", "5.00", None)]),
    "BH 5% last day": ("BH", "BH", None, None, "2021-12-31", "100.00", "USD", [("VAT", "5", "100.00", "5.00", None)]),
    "BH 10% first day": ("BH", "BH", None, None, "2022-01-01", "100.00", "USD", [("VAT", "10", "100.00", "10.00", None)]),
    "SG 7% last day": ("SG", "SG", None, None, "2022-12-31", "100.00", "SGD", [("GST", "7", "100.00", "7.00", None)]),
    "SG 8% first day": ("SG", "SG", None, None, "2023-01-01", "100.00", "SGD", [("GST", "8", "100.00", "8.00", None)]),
    "SG 8% last day": ("SG", "SG", None, None, "2023-12-31", "100.00", "SGD", [("GST", "8", "100.00", "8.00", None)]),
    "SG 9% first day": ("SG", "SG", None, None, "2024-01-01", "100.00", "SGD", [("GST", "9", "100.00", "9.00", None)]),
    # United States: SaaS taxable or not, Texas on 80 %
    "US-CA not taxable": ("US", "US", "CA", None, "2026-10-31", "100.00", "USD",
                          [("Sales tax", "0", "0.00", "0.00", "Not taxable in US-CA")]),
    "US-NY 4%": ("US", "US", "NY", None, "2026-10-31", "100.00", "USD", [("Sales tax", "4", "100.00", "4.00", None)]),
    "US-TX 6.25% on 80%": ("US", "US", "TX", None, "2026-10-31", "100.00", "USD",
                           [("Sales tax", "6.25", "80.00", "5.00", "80% of the charge is taxable")]),
    "US-TX rounding on the taxed share": ("US", "US", "TX", None, "2026-10-31", "33.33", "USD",
                                          [("Sales tax", "6.25", "26.66", "1.67", "80% of the charge is taxable")]),
    "US-FL not taxable": ("US", "US", "FL", None, "2026-10-31", "100.00", "USD",
                          [("Sales tax", "0", "0.00", "0.00", "Not taxable in US-FL")]),
    "US-WA 6.5%": ("US", "US", "WA", None, "2026-10-31", "100.00", "USD", [("Sales tax", "6.5", "100.00", "6.50", None)]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_tax_lines(rates: TaxRates, case: str) -> None:
    seller, country, sub, vat_id, day, net, currency, expected = CASES[case]
    lines = tax_lines(rates, seller, Customer(country, sub, vat_id), D(day), Decimal(net), currency)
    got = [(line.name, line.rate, line.base, line.amount, line.note) for line in lines]
    assert got == [(n, Decimal(r), Decimal(b), Decimal(a), note) for n, r, b, a, note in expected]
    if expected[0][4] == REVERSE_CHARGE:
        assert lines[0].buyer_vat_id == vat_id


def test_every_jurisdiction_of_the_file_has_a_case(rates: TaxRates) -> None:
    covered = {f"{c[1]}-{c[2]}" if f"{c[1]}-{c[2]}" in rates.jurisdictions else c[1] for c in CASES.values()}
    assert set(rates.jurisdictions) <= covered, sorted(set(rates.jurisdictions) - covered)


def test_every_dated_change_is_tested_on_both_sides(rates: TaxRates) -> None:
    tested = {(c[1] + (f"-{c[2]}" if c[2] else ""), c[4]) for c in CASES.values()}
    # Before a first known date there is no rate: the error cases are that side.
    tested |= {(c.country + (f"-{c.subdivision}" if c.subdivision else ""), day) for c, day, _ in ERRORS}
    for code, j in rates.jurisdictions.items():
        for tax in j.taxes:
            for entry in tax.rates:
                if entry.from_ is not None:
                    before = date.fromordinal(entry.from_.toordinal() - 1).isoformat()
                    first = entry.from_.isoformat()
                    assert (code, first) in tested, f"{code} {tax.name}: no case on {first}"
                    assert (code, before) in tested, f"{code} {tax.name}: no case on {before}"


def test_us_figures_are_marked_secondary(rates: TaxRates) -> None:
    lines = tax_lines(rates, "US", Customer("US", "NY"), D("2026-10-31"), Decimal("10.00"), "USD")
    assert lines[0].secondary and lines[0].source == "us-states"
    assert not tax_lines(rates, "IE", Customer("DE"), D("2026-10-31"), Decimal("10.00"), "EUR")[0].secondary


ERRORS = [
    (Customer("US", "OR"), "2026-10-31", "tax jurisdiction US-OR is not configured"),
    (Customer("US"), "2026-10-31", "tax jurisdiction US is not configured"),
    (Customer("CA"), "2026-10-31", "tax jurisdiction CA is not configured"),
    (Customer("JP"), "2026-10-31", "tax jurisdiction JP is not configured"),
    (Customer("DE"), "2020-06-30", "VAT of DE has no rate in force on 2020-06-30"),
    (Customer("AE"), "2017-12-31", "VAT of AE has no rate in force on 2017-12-31"),
    (Customer("BH"), "2018-12-31", "VAT of BH has no rate in force on 2018-12-31"),
    (Customer("FR"), "2013-12-31", "TVA of FR has no rate in force on 2013-12-31"),
    (Customer("IE"), "2020-08-31", "VAT of IE has no rate in force on 2020-08-31"),
]


@pytest.mark.parametrize(("customer", "day", "message"), ERRORS)
def test_an_unconfigured_jurisdiction_or_date_is_an_error_not_a_guess(rates: TaxRates, customer: Customer,
                                                                      day: str, message: str) -> None:
    with pytest.raises(TaxError, match=message):
        tax_lines(rates, "IE", customer, D(day), Decimal("1.00"), "EUR")


def test_a_bad_tax_file_is_reported_with_file_line_and_key(tmp_path: Path) -> None:
    from meshd.config import ConfigError

    bad = tmp_path / "tax_rates.yaml"
    bad.write_text(
        "sources:\n"
        "  a: {title: A}\n"
        "jurisdictions:\n"
        "  DE:\n"
        "    eu_vat: true\n"
        "    vat_id_pattern: '^DE[0-9]{9}$'\n"
        "    taxes:\n"
        "      - name: VAT\n"
        "        source: nowhere\n"
        "        rates:\n"
        "          - {from: 2021-01-01, rate: 19.0}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_tax_rates(bad)
    assert f"{bad}:11: jurisdictions.DE.taxes[0].rates[0].rate: rate 19.0 is a float" in str(err.value)
    bad.write_text(bad.read_text().replace("19.0", '"19"'))
    with pytest.raises(ConfigError) as err:
        load_tax_rates(bad)
    assert f"{bad}:9: jurisdictions.DE.taxes[0].source: source 'nowhere' is not declared" in str(err.value)
