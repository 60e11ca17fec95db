"""``meshd invoice --all``, ``meshd billing audit`` and ``meshd billing revenue`` against real daemons."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from meshd.natsserver import free_port
from meshd.testing import running_daemons, until

from .test_billing_daemon import OTHER_PLUGINS, cli, configs, last_month, plugin, record

pytestmark = [pytest.mark.anyio, pytest.mark.nats]


async def test_invoice_all_then_an_audit_finds_usage_that_arrived_after_invoicing(
        tmp_path: Path, nats_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    period, when = last_month()
    port = free_port()
    paths = configs(tmp_path, nats_server.url, {"eu-west-1": port})
    paths = {r: paths[r] for r in ("eu-west-1", "eu-central-1")}
    west_config = str(paths["eu-west-1"])
    async with running_daemons(paths, blocked=OTHER_PLUGINS) as ds:
        west = ds["eu-west-1"]
        await until(lambda: all(plugin(d, "metering").ingestor and plugin(d, "metering").ingestor.running
                                for d in ds.values()), what="metering ingestors running")

        def usage(tenant: str, prefix: str, n: int) -> list[dict[str, Any]]:
            return [{"id": f"{prefix}-{i}", "source": "//api", "tenant": tenant, "meter": "api_requests",
                     "time": when.isoformat(), "specversion": "1.0"} for i in range(n)]

        await record(west, usage("bistro-fr", "a", 30))
        await record(ds["eu-central-1"], usage("acme-eu", "b", 20))

        out_dir = tmp_path / "invoices"
        code, out, err = await cli(capsys, "invoice", "--all", "--period", period, "--out", str(out_dir),
                                   "--format", "html", "--config", west_config)
        assert code == 0, err
        # EU tenants only (this region's jurisdiction); the US one is another region's to bill
        files = sorted(out_dir.glob("*.json"))
        pages = {p.stem: p.read_text() for p in out_dir.glob("*.html")}
        assert set(pages) == {f.stem for f in files}
        assert sorted('lang="fr"' in page for page in pages.values()) == [False, True]  # each customer's language
        docs = {json.loads(f.read_text())["customer"]["tenant"]: json.loads(f.read_text()) for f in files}
        assert set(docs) == {"acme-eu", "bistro-fr"} and [f.stem for f in files] == ["EU-000001", "EU-000002"]
        assert "2 invoice(s) for" in out and "2 issued now, 0 failed" in out
        assert "2/2 tenants" in err  # the progress, one line per tenth when not on a terminal

        code, out, err = await cli(capsys, "billing", "audit", "--period", period, "--config", west_config)
        assert code == 0, out + err
        assert "2 invoice(s) checked, 0 difference(s)" in out

        # Late usage (a region's backlog) after the month was invoiced: the audit lists it and exits 1.
        await record(ds["eu-central-1"], usage("bistro-fr", "late", 5))
        code, out, err = await cli(capsys, "billing", "audit", "--period", period, "--config", west_config,
                                   "--json")
        assert code == 1, err
        report = json.loads(out)
        assert report["differences"] == [{
            "tenant": "bistro-fr", "meter": "api_requests", "problem": "quantity",
            "invoice": docs["bistro-fr"]["number"], "metered": "35", "invoiced": "30", "difference": "5"}]
        code, out, _ = await cli(capsys, "--lang", "de", "billing", "audit", "--period", period,
                                 "--config", west_config)
        assert code == 1 and "bistro-fr api_requests: gemessen 35, abgerechnet 30" in out

        # Running --all again issues nothing new and writes the same documents.
        code, out, _ = await cli(capsys, "invoice", "--all", "--period", period, "--out", str(out_dir),
                                 "--config", west_config)
        assert code == 0 and "0 issued now" in out
        kept = {d["number"]: d for d in plugin(west, "billing").documents()}
        assert kept == {d["number"]: d for d in docs.values()}

    code, out, err = await cli(capsys, "billing", "revenue", "--period", period, "--currency", "EUR",
                               "--config", west_config, "--json")
    assert code == 0, err
    revenue = json.loads(out)
    assert revenue["count"] == 2
    assert Decimal(revenue["total"]) == sum(Decimal(d["subtotal"]) for d in docs.values())
    assert revenue["by_region"] == {"eu-west-1": revenue["total"]}
    code, out, err = await cli(capsys, "billing", "mrr", "--currency", "USD", "--config", west_config)
    assert code == 0 and "MRR on" in out and "3 tenant(s)" in out, err
