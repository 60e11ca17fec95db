"""Monthly invoices for 10,010 tenants in six currencies, from usage in real metering ledgers, on one core.

    python billing_bench.py [--tenants 10010] [--regions 2] [--at-rest keyring|plaintext] [--pdf 20]

Setup (not timed): ``--tenants`` tenants cloned from the priced tenants of
etc/tenants.yaml (so every currency, tax jurisdiction and plan of the
sample is covered), and a month of usage for each (a COUNT, a SUM and a
UNIQUE_COUNT meter, over several hours) applied to ``--regions`` metering
ledgers (SQLite, encrypted at rest through a keys-plugin keyring by
default), as the metering plugin stores it.

Timed, in this one process: for every tenant, what the billing plugin does
for an invoice minus the network: each region's ledger answers its partial
totals (``Ledger.totals``), they are merged as the federation-wide query
merges them (``query.gather``), the invoice is computed (``compute``: lines,
conversions, tax) and serialised to JSON. Reported per phase. Numbering (one
JetStream KV create per invoice) is a network cost of its own and is not in
this number. ``--pdf N`` renders the first N invoices to PDF (when the
render module and WeasyPrint are installed) and reports the time per
invoice separately.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
from benchlib import machine_line

from meshd.tenants import Tenant
from meshd_plugins.billing.fx import load_fx
from meshd_plugins.billing.invoice import BillingFiles, compute, usage_values
from meshd_plugins.billing.matrix import load_matrix
from meshd_plugins.billing.taxrates import load_tax_rates
from meshd_plugins.keys.manager import KeyManager
from meshd_plugins.keys.settings import KeysConfig
from meshd_plugins.metering.atrest import KeyringProtected, Plaintext
from meshd_plugins.metering.config import MeterKind
from meshd_plugins.metering.events import UsageEvent
from meshd_plugins.metering.ledger import Ledger
from meshd_plugins.metering.query import gather

ETC = Path(__file__).resolve().parents[1] / "etc"
PERIOD = "2026-10"
KINDS = {"api_requests": MeterKind.COUNT, "storage_gb_hours": MeterKind.SUM, "active_users": MeterKind.UNIQUE_COUNT}


# (residency, country, subdivision, currency, VAT ID, language): every currency and tax regime of the matrix.
PROFILES = [
    ("EU", "FR", None, "EUR", None, "fr"), ("EU", "DE", None, "EUR", "DE123456789", "de"),
    ("EU", "IE", None, "EUR", "IE1234567T", "en"), ("EU", "ES", None, "EUR", None, "es"),
    ("EU", "GB", None, "GBP", None, "en"),
    ("US", "US", "NY", "USD", None, "en"), ("US", "US", "CA", "USD", None, "en"),
    ("US", "US", "TX", "USD", None, "es"), ("US", "US", "FL", "USD", None, "en"),
    ("US", "US", "WA", "USD", None, "en"),
    ("CA", "CA", "ON", "CAD", None, "en"), ("CA", "CA", "QC", "CAD", None, "fr"),
    ("CA", "CA", "BC", "CAD", None, "en"),
    ("BH", "BH", None, "USD", None, "ar"), ("BH", "AE", None, "AED", None, "ar"),
    ("SG", "SG", None, "SGD", None, "en"),
]
PLANS = ["starter", "professional", "business", "enterprise"]


def tenants(n: int) -> dict[str, Tenant]:
    out = {}
    for i in range(n):
        residency, country, subdivision, currency, vat_id, lang = PROFILES[i % len(PROFILES)]
        out[f"t{i:05d}-{country.lower()}"] = Tenant(
            residency=residency, country=country, subdivision=subdivision, currency=currency, vat_id=vat_id,
            lang=lang, plan=PLANS[(i // len(PROFILES)) % len(PLANS)])
    return out


def usage_events(tenant: str, i: int, region: int, start: float) -> list[UsageEvent]:
    """A tenant's month in one region: requests, storage and users over six hours, varied by tenant."""
    events = []
    for hour in range(6):
        at = start + (region * 6 + hour) * 3600.0 + 60
        for k in range(1 + (i + hour) % 3):
            events.append(UsageEvent(f"{tenant}/r{region}-{hour}-{k}", "//api", tenant, "api_requests", None, at))
        events.append(UsageEvent(f"{tenant}/s{region}-{hour}", "//disk", tenant, "storage_gb_hours",
                                 Decimal(40 + (i * 7 + hour) % 900), at))
        events.append(UsageEvent(f"{tenant}/u{region}-{hour}", "//auth", tenant, "active_users",
                                 f"user-{(i + hour) % 9}", at))
    return events


def ledgers(tmp: Path, names: list[str], at_rest: str, population: dict[str, Tenant], start: float) -> list[Ledger]:
    out = []
    for r, region in enumerate(names):
        if at_rest == "keyring":
            keys = KeyManager(region=region, state_dir=tmp / region, cfg=KeysConfig())
            protection: Any = KeyringProtected(keys.keyring("metering"))
        else:
            protection = Plaintext()
        ledger = Ledger(tmp / region / "ledger.sqlite3", protection, region=region, retention=400 * 86400.0,
                        clock=lambda: start + 40 * 86400.0)
        ledger.open()
        batch: list[tuple[list[UsageEvent], float]] = []
        for i, tenant in enumerate(population):
            batch.append((usage_events(tenant, i, r, start), start))
            if len(batch) == 500:
                ledger.apply(batch)
                batch = []
        if batch:
            ledger.apply(batch)
        out.append(ledger)
    return out


async def invoices(population: dict[str, Tenant], files: BillingFiles, books: list[Ledger], start: float,
                   end: float) -> tuple[list[str], dict[str, float]]:
    spent: dict[str, float] = collections.defaultdict(float)
    names = [b.region for b in books]
    by_region = {b.region: b for b in books}
    out = []
    for tenant_id, tenant in population.items():
        t0 = time.perf_counter()

        async def ask(region: str, tenant_id: str = tenant_id) -> tuple[dict[str, Any], dict[str, MeterKind]]:
            return by_region[region].totals(tenant_id, start, end), dict(KINDS)

        usage = await gather(names, ask, KINDS)
        t1 = time.perf_counter()
        doc = compute(tenant_id, tenant, PERIOD, usage_values(usage), files)
        t2 = time.perf_counter()
        out.append(json.dumps(doc, ensure_ascii=False, sort_keys=True))
        t3 = time.perf_counter()
        spent["usage (ledgers + merge)"] += t1 - t0
        spent["compute (lines, fx, tax)"] += t2 - t1
        spent["JSON"] += t3 - t2
    return out, spent


def pdfs(docs: list[str], n: int) -> None:
    try:
        from meshd_plugins.billing.render import render_html, render_pdf  # type: ignore[attr-defined]
    except ImportError as exc:
        print(f"\nPDF: not measured ({exc})")
        return
    took = []
    for text in docs[:n]:
        doc = json.loads(text)
        start = time.perf_counter()
        render_pdf(render_html(doc, doc["customer"].get("lang") or "en"))
        took.append((time.perf_counter() - start) * 1000)
    took.sort()
    print(f"\nPDF (HTML + WeasyPrint) of {len(took)} invoices: median {statistics.median(took):.0f} ms, "
          f"p95 {took[max(0, int(len(took) * 0.95) - 1)]:.0f} ms, first {took[0]:.0f} ms per invoice")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=10_010)
    parser.add_argument("--regions", type=int, default=2)
    parser.add_argument("--at-rest", choices=["keyring", "plaintext"], default="keyring")
    parser.add_argument("--pdf", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(machine_line())
    files = BillingFiles(load_matrix(ETC / "billing_matrix.yaml", list(KINDS)), load_tax_rates(ETC / "tax_rates.yaml"),
                         load_fx(ETC / "fx_rates.yaml"))
    population = tenants(args.tenants)
    start = datetime(2026, 10, 1, tzinfo=UTC).timestamp()
    end = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
    tmp = Path(tempfile.mkdtemp(prefix="billing-bench-"))
    t0 = time.perf_counter()
    books = ledgers(tmp, [f"region-{r}" for r in range(args.regions)], args.at_rest, population, start)
    currencies = collections.Counter(t.currency for t in population.values())
    print(f"setup: {len(population):,} tenants ({', '.join(f'{c} {n:,}' for c, n in sorted(currencies.items()))}), "
          f"{args.regions} ledgers at rest: {args.at_rest}, "
          f"{sum(b.counters['accepted'] for b in books):,} events, {time.perf_counter() - t0:.1f} s")
    rounds = []
    for _ in range(args.rounds):
        begin = time.perf_counter()
        docs, spent = anyio.run(invoices, population, files, books, start, end)
        rounds.append((time.perf_counter() - begin, spent))
    best, spent = min(rounds, key=lambda r: r[0])
    print(f"\n{len(docs):,} invoices (JSON), {args.rounds} rounds: best {best:.2f} s, "
          f"median {statistics.median(r[0] for r in rounds):.2f} s; "
          f"{len(docs) / best:,.0f} invoices/s, {best / len(docs) * 1e6:.0f} us each (target: all in <= 10 s)")
    for phase, seconds in spent.items():
        print(f"  {phase:26} {seconds:6.2f} s  {seconds / len(docs) * 1e6:6.0f} us/invoice")
    totals = collections.defaultdict(Decimal)
    for text in docs:
        doc = json.loads(text)
        totals[doc["currency"]] += Decimal(doc["total"])
    print("  invoiced: " + ", ".join(f"{c} {v:,}" for c, v in sorted(totals.items())))
    pdfs(docs, args.pdf)
    for book in books:
        book.close()


if __name__ == "__main__":
    main()
