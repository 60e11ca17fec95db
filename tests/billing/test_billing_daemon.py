"""The billing plugin in real daemons: usage metered in two regions, invoiced once, in its jurisdiction."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from babel.numbers import format_currency

from meshd.cli import main
from meshd.natsserver import free_port
from meshd.testing import running_daemons, write_federation
from meshd_plugins.billing.runtime import Failure

pytestmark = [pytest.mark.anyio, pytest.mark.nats]

CENT = Decimal("0.01")
ROOT = Path(__file__).resolve().parents[2]
ETC = ROOT / "etc"
REGIONS = ["eu-west-1", "eu-central-1", "us-east-1"]
OTHER_PLUGINS = ["health", "membership", "failover", "routing", "alerts", "keys"]
TENANTS = """\
tenants:
  bistro-fr: {residency: EU, country: FR, currency: EUR, plan: starter, lang: fr}
  acme-eu: {residency: EU, country: DE, currency: EUR, plan: business, vat_id: DE123456789}
  globex-us: {residency: US, country: US, subdivision: TX, currency: USD, plan: enterprise}
"""
METERS = {"api_requests": {"kind": "COUNT"}, "storage_gb_hours": {"kind": "SUM"},
          "active_users": {"kind": "UNIQUE_COUNT"}}


def last_month() -> tuple[str, datetime]:
    """The month before this one, and an instant in its last hour."""
    start = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    instant = start - timedelta(minutes=30)
    return instant.strftime("%Y-%m"), instant


def configs(tmp_path: Path, nats_url: str, cli_ports: dict[str, int]) -> dict[str, Path]:
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(TENANTS)
    patch = {
        "tenants": str(tenants),
        # the last hour of last month is up to 31 days old: keep it countable
        "metering": {"meters": METERS, "max_event_age": "40d", "dedup_retention": "45d"},
        "billing": {"matrix": str(ETC / "billing_matrix.yaml"), "tax_rates": str(ETC / "tax_rates.yaml"),
                    "fx_rates": str(ETC / "fx_rates.yaml")},
        "plugins": {"disabled": OTHER_PLUGINS},
    }
    paths = write_federation(tmp_path, REGIONS, nats_url, patch=patch)
    for region, port in cli_ports.items():  # a known port, for the CLI to find the daemon
        data = yaml.safe_load(paths[region].read_text())
        data["http"] = {"port": port}
        paths[region].write_text(yaml.safe_dump(data, sort_keys=False))
    return paths


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``meshd ARGV`` in a worker thread (the daemons answer it from this event loop)."""
    capsys.readouterr()
    code = await anyio.to_thread.run_sync(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def plugin(daemon: Any, name: str) -> Any:
    return daemon.hooks.pm.get_plugin(name).runtime


async def record(daemon: Any, events: list[dict[str, Any]]) -> None:
    status, result = await plugin(daemon, "metering").record(json.dumps(events).encode())
    assert status == 200 and result.get("committed") and not result["rejected"], result


async def test_invoice_from_two_regions_usage_numbered_once_and_credited(
        tmp_path: Path, nats_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    period, when = last_month()
    paths = configs(tmp_path, nats_server.url, {"eu-west-1": free_port(), "eu-central-1": free_port()})
    async with running_daemons(paths, blocked=OTHER_PLUGINS) as daemons:
        with anyio.fail_after(20):
            for d in daemons.values():
                while not (plugin(d, "metering").ingestor and plugin(d, "metering").ingestor.running):
                    await anyio.sleep(0.02)
        west, central, us = daemons["eu-west-1"], daemons["eu-central-1"], daemons["us-east-1"]
        at = when.isoformat()

        def events(prefix: str, n: int) -> list[dict[str, Any]]:
            return [{"id": f"{prefix}-{i}", "source": "//api", "tenant": "bistro-fr", "meter": "api_requests",
                     "time": at, "specversion": "1.0"} for i in range(n)]

        await record(west, events("w", 60))
        await record(central, events("c", 40))
        await record(central, [{"id": "s1", "source": "//disk", "tenant": "bistro-fr", "meter": "storage_gb_hours",
                                "value": "1720", "time": at, "specversion": "1.0"}])

        billing = plugin(west, "billing")
        assert billing.state == "running", billing.detail
        first = await billing.invoice("bistro-fr", period)
        doc = first["document"]
        assert first["issued"] and doc["number"] == "EU-000001" and doc["seller"]["id"] == "meshd-eu"
        overage = {line["meter"]: line for line in doc["lines"] if line["kind"] == "overage"}
        # usage from both regions of the residency: 100 requests (within the quota), 1720 GB-h (1000 over)
        assert overage["api_requests"]["used"] == "100" and overage["api_requests"]["amount"] == "0.00"
        assert (overage["storage_gb_hours"]["used"], overage["storage_gb_hours"]["quantity"]) == ("1720", "1000")
        assert doc["tax_lines"][0]["rate"] == "20"

        again = await billing.invoice("bistro-fr", period)
        assert not again["issued"] and again["document"] == doc, "a rerun returns the invoice, unchanged"
        # another region of the jurisdiction asked for the same month: no new number, no second copy
        with pytest.raises(Failure, match="EU-000001 was issued by eu-west-1"):
            await plugin(central, "billing").invoice("bistro-fr", period)
        second = await plugin(central, "billing").invoice("acme-eu", period)
        assert second["document"]["number"] == "EU-000002"
        assert second["document"]["tax_lines"][0]["note"] == "Reverse charge"

        # invoices stay in their jurisdiction: the US region refuses an EU tenant, and counts it
        with pytest.raises(Failure) as err:
            await plugin(us, "billing").invoice("bistro-fr", period)
        assert err.value.code == "wrong_jurisdiction" and "eu-west-1" in str(err.value)
        assert us.metrics.value("billing_requests_refused_total", code="wrong_jurisdiction") == 1
        us_doc = (await plugin(us, "billing").invoice("globex-us", period))["document"]
        assert us_doc["number"] == "US-000001"  # numbered per seller entity
        assert Decimal(us_doc["tax_lines"][0]["base"]) == (Decimal(us_doc["subtotal"]) * 8 / 10).quantize(CENT)
        this_month = datetime.now(UTC).strftime("%Y-%m")
        with pytest.raises(Failure, match="not closed yet"):
            await billing.invoice("bistro-fr", this_month)

        note = (await billing.credit("EU-000001", "wrong plan"))["document"]
        assert note["type"] == "credit_note" and note["credits"] == "EU-000001" and note["number"] == "EU-000003"
        assert note["total"] == "-" + doc["total"]
        stored = billing.store.get("meshd-eu", "EU-000001")
        assert stored == doc, "crediting an invoice does not change it"
        assert west.metrics.value("billing_documents_issued_total", type="invoice") == 1
        assert west.metrics.value("billing_documents_issued_total", type="credit_note") == 1

        # the CLI, through the daemons' admin API
        west_cfg, central_cfg = str(paths["eu-west-1"]), str(paths["eu-central-1"])
        code, out, _ = await cli(capsys, "--lang", "de", "invoice", "--config", west_cfg, "--tenant", "bistro-fr",
                                 "--period", period)
        assert code == 0 and "EU-000001" in out and "bereits ausgestellt" in out
        assert format_currency(Decimal(doc["total"]), "EUR", locale="de_DE") in out
        code, out, _ = await cli(capsys, "invoice", "--config", west_cfg, "--tenant", "bistro-fr", "--period", period,
                                 "--format", "json")
        assert code == 0 and json.loads(out) == doc
        # html and pdf are rendered by the CLI from the document the daemon answers
        page, pdf = tmp_path / "EU-000001.html", tmp_path / "EU-000003.pdf"
        code, out, _ = await cli(capsys, "invoice", "--config", west_cfg, "--tenant", "bistro-fr", "--period", period,
                                 "--format", "html", "--lang", "ar", "--out", str(page))
        assert code == 0 and str(page) in out
        html = page.read_text(encoding="utf-8")
        assert '<html lang="ar" dir="rtl">' in html and "EU-000001" in html
        assert format_currency(Decimal(doc["total"]), "EUR", locale="ar") in html
        code, out, _ = await cli(capsys, "invoice", "--config", west_cfg, "--format", "pdf", "--out", str(pdf),
                                 "credit", "EU-000001", "--reason", "wrong plan")
        assert code == 0 and pdf.read_bytes().startswith(b"%PDF-") and "EU-000003" in out
        code, _, err = await cli(capsys, "--lang", "en", "invoice", "--config", central_cfg, "--tenant", "bistro-fr",
                                 "--period", period)
        assert code == 1 and "issued by eu-west-1" in err
        code, _, err = await cli(capsys, "--lang", "en", "invoice", "--config", west_cfg, "--tenant", "bistro-fr",
                                 "--period", this_month)
        assert code == 2 and "not closed yet" in err
        code, _, err = await cli(capsys, "--lang", "en", "invoice", "--config", west_cfg, "--tenant", "nobody",
                                 "--period", period)
        assert code == 2 and "'nobody' is not in the tenant directory" in err
        code, out, _ = await cli(capsys, "--lang", "en", "invoice", "--config", central_cfg, "credit", "EU-000002",
                                 "--reason", "duplicate")
        assert code == 0 and "credit note EU-000004 issued for acme-eu" in out
        code, _, err = await cli(capsys, "--lang", "en", "invoice", "--config", west_cfg, "credit", "EU-999999",
                                 "--reason", "typo")
        assert code == 2 and "EU-999999" in err
