"""Invoices from usage: lines, overage (flat, tiered, converted), tax, totals, credit notes."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshd.adjustments import InvoiceAdjustment
from meshd.config import ConfigError, load_model_file
from meshd.tenants import Tenant, TenantFile
from meshd_plugins.billing.fx import load_fx
from meshd_plugins.billing.invoice import BillingFiles, InvoiceError, check_closed, compute, credit_note, usage_values
from meshd_plugins.billing.matrix import load_matrix
from meshd_plugins.billing.money import to_minor
from meshd_plugins.billing.taxrates import load_tax_rates

ROOT = Path(__file__).resolve().parents[2]
ETC = ROOT / "etc"
METERS = ["api_requests", "storage_gb_hours", "active_users"]


@pytest.fixture(scope="module")
def files() -> BillingFiles:
    return BillingFiles(load_matrix(ETC / "billing_matrix.yaml", METERS), load_tax_rates(ETC / "tax_rates.yaml"),
                        load_fx(ETC / "fx_rates.yaml"))


@pytest.fixture(scope="module")
def tenants() -> dict[str, Tenant]:
    return load_model_file(ETC / "tenants.yaml", TenantFile).tenants


def amounts(doc: dict, key: str = "lines") -> list[str]:
    return [line["amount"] for line in doc[key]]


def test_flat_overage_with_a_converted_price_and_b2c_vat(files: BillingFiles, tenants: dict) -> None:
    usage = {"api_requests": Decimal(150000), "storage_gb_hours": Decimal(1000), "active_users": Decimal(7)}
    doc = compute("bistro-fr", tenants["bistro-fr"], "2026-10", usage, files)
    assert doc["seller"]["id"] == "meshd-eu" and doc["currency"] == "EUR" and doc["tax_point"] == "2026-10-31"
    assert amounts(doc) == ["45.00", "14.80", "18.50", "0.15"]  # meters in name order
    storage = doc["lines"][3]
    # 280 GB-h over the quota at USD 0.0006 converted at the 2026-10-30 rate, stated on the line
    assert (storage["quantity"], storage["included"], storage["fx"]["rate"], storage["fx"]["date"]) == \
        ("280", "720", "0.9185", "2026-10-30")
    assert doc["fx"] == [storage["fx"]]
    assert (doc["subtotal"], doc["tax_total"], doc["total"]) == ("78.45", "15.69", "94.14")
    assert doc["tax_lines"][0]["rate"] == "20" and doc["tax_lines"][0]["name"] == "TVA"


def test_tiered_overage_and_two_canadian_tax_lines(files: BillingFiles, tenants: dict) -> None:
    usage = {"api_requests": Decimal(12_000_000)}
    doc = compute("maple-ca", tenants["maple-ca"], "2026-10", usage, files)
    assert [(line["kind"], line["amount"]) for line in doc["lines"]] == [
        ("plan", "675.00"), ("addon", "39.00"), ("addon", "66.00"),
        ("overage", "0.00"), ("overage", "1700.00"), ("overage", "400.00"), ("overage", "0.00")]
    tier1, tier2 = doc["lines"][4:6]
    assert (tier1["quantity"], tier1["tier"], tier2["quantity"], tier2["tier"]) == \
        ("5000000", {"from": "0", "up_to": "5000000"}, "2000000", {"from": "5000000", "up_to": None})
    assert [(t["name"], t["amount"]) for t in doc["tax_lines"]] == [("GST", "144.00"), ("QST", "287.28")]
    assert doc["total"] == "3311.28"


def test_eu_business_customer_in_another_state_is_reverse_charged(files: BillingFiles, tenants: dict) -> None:
    doc = compute("acme-eu", tenants["acme-eu"], "2026-10", {}, files)
    assert doc["tax_lines"] == [{"name": "VAT", "jurisdiction": "DE", "rate": "0", "base": doc["subtotal"],
                                 "amount": "0.00", "note": "Reverse charge", "buyer_vat_id": "DE123456789"}]
    assert doc["total"] == doc["subtotal"]


def test_an_addon_without_a_local_price_is_converted_and_says_so(files: BillingFiles, tenants: dict) -> None:
    doc = compute("lion-sg", tenants["lion-sg"], "2026-10", {}, files)
    support = next(line for line in doc["lines"] if line.get("addon") == "premium_support")
    assert support["fx"]["rate"] == "1.3398" and support["amount"] == "668.56"  # 499 x 1.3398 = 668.5602


@pytest.mark.parametrize(("change", "field"), [
    ({"plan": "platinum"}, "plan"),
    ({"currency": "JPY"}, "currency"),
    ({"country": "US", "subdivision": "OR", "residency": "US", "currency": "USD"}, "tax"),
    ({"residency": "ZZ"}, "entity"),
])
def test_what_is_not_configured_is_a_clear_error(files: BillingFiles, tenants: dict, change: dict,
                                                 field: str) -> None:
    tenant = tenants["bistro-fr"].model_copy(update=change)
    with pytest.raises(InvoiceError) as err:
        compute("bistro-fr", tenant, "2026-10", {}, files)
    assert err.value.field == field


def test_an_open_period_and_incomplete_usage_are_refused() -> None:
    with pytest.raises(InvoiceError, match="2026-10 is not closed yet"):
        check_closed("2026-10", datetime(2026, 10, 31, 23, 59, tzinfo=UTC))
    check_closed("2026-10", datetime(2026, 11, 1, tzinfo=UTC))
    with pytest.raises(InvoiceError, match="incomplete.*ca-central-1"):
        usage_values({"complete": False, "missing": ["ca-central-1"], "meters": {}})
    with pytest.raises(InvoiceError, match="upper bound"):
        usage_values({"complete": True, "meters": {"active_users": {"value": "9", "exact": False}}})
    with pytest.raises(InvoiceError, match="usage.plan_name: usage of plan_name 'gold' is not a decimal"):
        usage_values({"complete": True, "meters": {"plan_name": {"value": "gold", "exact": True}}})
    assert usage_values({"complete": True, "meters": {"api_requests": {"value": "12", "exact": True}}}) == \
        {"api_requests": Decimal(12)}


def test_a_bad_matrix_names_file_line_and_key(tmp_path: Path) -> None:
    text = (ETC / "billing_matrix.yaml").read_text()
    bad = tmp_path / "billing_matrix.yaml"
    bad.write_text(text.replace('storage_gb_hours: {per: "1", price: {USD: "0.0006"}}',
                                'storage_gb_hour: {per: "1", price: {EUR: "0.0006"}}'))
    with pytest.raises(ConfigError) as err:
        load_matrix(bad, METERS)
    line = next(i for i, row in enumerate(bad.read_text().splitlines(), 1) if "storage_gb_hour:" in row)
    message = str(err.value)
    assert f"{bad}:{line}: plans.starter.overage.storage_gb_hour: meter 'storage_gb_hour' is not a meter" in message
    assert f"{bad}:{line}: plans.starter.overage.storage_gb_hour.price: no price in" in message
    bad.write_text(text.replace('base: {USD: "49.00",', 'base: {USD: 49.5,'))
    with pytest.raises(ConfigError, match=r"billing_matrix.yaml:\d+: plans.starter.base.USD: amount 49.5 is a float"):
        load_matrix(bad, METERS)


usage_st = st.fixed_dictionaries({m: st.integers(min_value=0, max_value=10**9).map(Decimal) for m in METERS})


@settings(max_examples=60, deadline=None)
@given(tenant=st.sampled_from(["acme-eu", "bistro-fr", "globex-us", "maple-ca", "souk-bh", "lion-sg"]),
       currency=st.sampled_from(["USD", "EUR", "GBP", "CAD", "AED", "SGD"]), usage=usage_st)
def test_lines_plus_tax_equal_the_total_and_a_credit_note_nets_to_zero(files: BillingFiles, tenants: dict,
                                                                       tenant: str, currency: str,
                                                                       usage: dict) -> None:
    doc = compute(tenant, tenants[tenant].model_copy(update={"currency": currency}), "2026-10", usage, files)
    cents = [to_minor(Decimal(a), currency) for a in amounts(doc) + amounts(doc, "tax_lines")]
    assert sum(cents) == to_minor(Decimal(doc["total"]), currency)
    doc["number"] = "X-000001"
    note = credit_note(doc, "wrong plan")
    assert note["credits"] == "X-000001" and note["type"] == "credit_note"
    assert Decimal(doc["total"]) + Decimal(note["total"]) == 0
    for key in ("lines", "tax_lines"):
        assert all(Decimal(a) + Decimal(b) == 0 for a, b in zip(amounts(doc, key), amounts(note, key), strict=True))


def credit(key: str, percent: str | None = None, minor: int | None = None, currency: str | None = None,
           source: str = "sla") -> InvoiceAdjustment:
    return InvoiceAdjustment(source=source, key=key, description=f"service credit {key}",
                             percent_of_base=Decimal(percent) if percent is not None else None,
                             amount_minor=minor, currency=currency)


def test_adjustments_come_before_tax_each_key_once(files: BillingFiles, tenants: dict) -> None:
    usage = {"api_requests": Decimal(150000), "storage_gb_hours": Decimal(1000), "active_users": Decimal(7)}
    plain = compute("bistro-fr", tenants["bistro-fr"], "2026-10", usage, files)
    adjusted = compute("bistro-fr", tenants["bistro-fr"], "2026-10", usage, files, [
        credit("sla:2026-10:eu-west-1", percent="-10"), credit("sla:2026-10:eu-west-1", percent="-10"),
        credit("goodwill-7", minor=-250, currency="EUR", source="support")])
    extra = adjusted["lines"][len(plain["lines"]):]
    # 10 % of the 45.00 base fee, once although returned twice; then 2.50 EUR in minor units
    assert [(a["source"], a["amount"]) for a in extra] == [("sla", "-4.50"), ("support", "-2.50")]
    assert extra[0]["percent_of_base"] == "-10" and extra[0]["description"] == "service credit sla:2026-10:eu-west-1"
    assert Decimal(adjusted["subtotal"]) == Decimal(plain["subtotal"]) - Decimal("7.00")
    assert adjusted["tax_lines"][0]["base"] == adjusted["subtotal"], "tax on the adjusted subtotal"


def test_credits_never_take_an_invoice_below_zero_and_stay_in_its_currency(files: BillingFiles,
                                                                           tenants: dict) -> None:
    doc = compute("bistro-fr", tenants["bistro-fr"], "2026-10", {}, files,
                  [credit("a", percent="-80"), credit("b", percent="-80")])
    assert [line["amount"] for line in doc["lines"] if line["kind"] == "adjustment"] == ["-36.00", "-9.00"]
    assert doc["lines"][-1]["capped"] is True and doc["subtotal"] == "0.00" and doc["total"] == "0.00"
    with pytest.raises(InvoiceError, match="adjustment: sla adjustment x is in USD, the invoice in EUR"):
        compute("bistro-fr", tenants["bistro-fr"], "2026-10", {}, files, [credit("x", minor=-100, currency="USD")])


@settings(max_examples=60, deadline=None)
@given(percents=st.lists(st.decimals(min_value=-100, max_value=50, places=2), max_size=3),
       fixed=st.lists(st.integers(min_value=-100_000, max_value=100_000), max_size=3),
       tenant=st.sampled_from(["bistro-fr", "maple-ca", "acme-eu"]))
def test_adjusted_lines_plus_tax_equal_the_total(files: BillingFiles, tenants: dict, percents: list[Decimal],
                                                 fixed: list[int], tenant: str) -> None:
    currency = tenants[tenant].currency
    adjustments = [credit(f"p{i}", percent=str(p)) for i, p in enumerate(percents)] + \
        [credit(f"f{i}", minor=m, currency=currency) for i, m in enumerate(fixed)]
    doc = compute(tenant, tenants[tenant], "2026-10", {"api_requests": Decimal(2_000_000)}, files, adjustments)
    lines = sum(Decimal(line["amount"]) for line in doc["lines"])
    taxes = sum(Decimal(t["amount"]) for t in doc["tax_lines"])
    assert lines == Decimal(doc["subtotal"]) >= 0
    assert lines + taxes == Decimal(doc["total"])
    note = credit_note({**doc, "number": "EU-000009"}, "test")
    assert Decimal(doc["total"]) + Decimal(note["total"]) == 0
