"""MRR and revenue in one reporting currency: exact sums, one rounding, every rate stated."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from meshd.tenants import Tenant
from meshd_plugins.billing.invoice import BillingFiles, InvoiceError, compute, credit_note
from meshd_plugins.billing.money import round_line
from meshd_plugins.billing.reports import Converter, monthly_fee, mrr, revenue

from .test_invoice import files, tenants  # noqa: F401 - fixtures

DAY = date(2026, 10, 31)


def test_conversion_is_direct_from_usd_and_through_usd_otherwise(files: BillingFiles) -> None:  # noqa: F811
    to_gbp = Converter(files.fx, "GBP", DAY)
    assert to_gbp(Decimal(100), "USD") == Decimal("79.04")
    assert to_gbp(Decimal("91.85"), "EUR") == Decimal("91.85") / Decimal("0.9185") * Decimal("0.7904")
    assert to_gbp(Decimal(7), "GBP") == Decimal(7)
    assert [(r["from"], r["to"], r["date"]) for r in to_gbp.rates()] == [
        ("USD", "EUR", "2026-10-30"), ("USD", "GBP", "2026-10-30")]
    early = Converter(files.fx, "USD", date(2026, 10, 1))  # the September rate still applies
    assert early(Decimal("0.9210"), "EUR") == Decimal(1) and early.rates()[0]["date"] == "2026-09-30"


def test_mrr_is_each_tenants_base_and_addons_as_its_invoice_bills_them(files: BillingFiles,  # noqa: F811
                                                                         tenants: dict[str, Tenant]) -> None:  # noqa: F811
    report = mrr(tenants, files, DAY, "EUR")
    convert = Converter(files.fx, "EUR", DAY)
    expected = Decimal(0)
    for tenant_id, tenant in tenants.items():
        if not tenant.plan:
            continue
        # The same fee through the invoice: the plan and add-on lines of a month without usage.
        doc = compute(tenant_id, tenant, "2026-10", {}, files)
        fixed = sum(Decimal(line["amount"]) for line in doc["lines"] if line["kind"] in ("plan", "addon"))
        assert round_line(monthly_fee(tenant_id, tenant, files, DAY), tenant.currency or "") == fixed, tenant_id
        expected += convert(monthly_fee(tenant_id, tenant, files, DAY), tenant.currency or "")
    assert report["total"] == str(round_line(expected, "EUR"))
    assert report["count"] == sum(1 for t in tenants.values() if t.plan)
    assert set(report["by_currency"]) == {t.currency for t in tenants.values() if t.plan}
    assert set(report["by_plan"]) <= set(files.matrix.plans)
    for group in ("by_region", "by_jurisdiction", "by_plan", "by_currency"):
        # each grouping covers everything: its parts add up to the total, to a cent per group
        parts = sum(Decimal(v) for v in report[group].values())
        assert abs(parts - Decimal(report["total"])) <= Decimal("0.01") * len(report[group]), group
    assert report["native"]["EUR"] == str(sum(
        round_line(monthly_fee(i, t, files, DAY), "EUR") for i, t in tenants.items() if t.currency == "EUR"))
    assert {r["to"] for r in report["rates"]} >= {"EUR"}


def test_mrr_names_a_tenant_it_cannot_price(files: BillingFiles, tenants: dict[str, Tenant]) -> None:  # noqa: F811
    broken = {**tenants, "ghost": tenants["bistro-fr"].model_copy(update={"plan": "platinum"})}
    with pytest.raises(InvoiceError, match="tenant ghost: plan 'platinum' is not in billing_matrix.yaml"):
        mrr(broken, files, DAY, "USD")


def test_revenue_is_net_of_tax_and_of_credit_notes(files: BillingFiles, tenants: dict[str, Tenant]) -> None:  # noqa: F811
    docs = []
    for n, tenant_id in enumerate(["bistro-fr", "acme-eu", "maple-ca"], start=1):
        doc = compute(tenant_id, tenants[tenant_id], "2026-10", {"api_requests": Decimal(3_000_000)}, files)
        docs.append({**doc, "number": f"X-{n:06d}"})
    note = {**credit_note(docs[0], "wrong plan"), "number": "X-000004"}
    other_month = {**docs[1], "period": "2026-09", "number": "X-000005"}
    report = revenue([*docs, note, other_month], files.fx, "2026-10", DAY, "EUR",
                     {d["number"]: "eu-west-1" for d in docs})
    eur = Decimal(docs[1]["subtotal"])  # bistro-fr's invoice is cancelled by its credit note
    cad = Converter(files.fx, "EUR", DAY)(Decimal(docs[2]["subtotal"]), "CAD")
    assert report["total"] == str(round_line(eur + cad, "EUR")) and report["count"] == 4
    assert report["by_type"]["credit_note"] == "-" + docs[0]["subtotal"]
    assert report["native"] == {"CAD": docs[2]["subtotal"], "EUR": docs[1]["subtotal"]}
    assert report["by_region"]["-"] == report["by_type"]["credit_note"]  # the note's region was not given
