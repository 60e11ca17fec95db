"""Other plugins' adjustments on a real daemon's invoices: applied once, and a failing plugin issues nothing."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from meshd import InvoiceAdjustment, hookimpl
from meshd.natsserver import free_port
from meshd.testing import running_daemons, until
from meshd_plugins.billing.runtime import Failure

from .test_billing_daemon import OTHER_PLUGINS, configs, last_month, plugin

pytestmark = [pytest.mark.anyio, pytest.mark.nats]


class ServiceCredits:
    """A plugin that credits 10 % to bistro-fr (what the SLA plugin does), asynchronously, and fails for acme-eu."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, str]] = []

    @hookimpl
    async def meshd_invoice_adjustments(self, daemon: Any, tenant: str, period: str, lang: str
                                        ) -> list[InvoiceAdjustment]:
        self.asked.append((tenant, period, lang))
        await anyio.lowlevel.checkpoint()
        if tenant == "acme-eu":
            raise RuntimeError("SLA ledger unreachable")
        if tenant != "bistro-fr":
            return []
        return [InvoiceAdjustment(source="sla", key=f"sla:{period}:eu-west-1", percent_of_base=Decimal("-10"),
                                  description="Crédit de service : disponibilité 99,2 % (engagement 99,9 %)")]


async def test_a_plugins_credit_is_on_the_invoice_and_a_failing_plugin_refuses_it(
        tmp_path: Path, nats_server: Any) -> None:
    period, _ = last_month()
    paths = configs(tmp_path, nats_server.url, {"eu-west-1": free_port()})
    paths = {r: paths[r] for r in ("eu-west-1", "eu-central-1")}  # usage is complete with every EU region
    async with running_daemons(paths, blocked=OTHER_PLUGINS, extra_plugins=[("credits", ServiceCredits)]) as ds:
        west = ds["eu-west-1"]
        await until(lambda: all(plugin(d, "metering").ingestor and plugin(d, "metering").ingestor.running
                                for d in ds.values()), what="metering ingestors running")
        billing = plugin(west, "billing")
        doc = (await billing.invoice("bistro-fr", period))["document"]
        [line] = [line for line in doc["lines"] if line["kind"] == "adjustment"]
        assert (line["source"], line["amount"], line["key"]) == ("sla", "-4.50", f"sla:{period}:eu-west-1")
        assert line["description"].startswith("Crédit de service")
        credits: ServiceCredits = west.hooks.pm.get_plugin("credits")
        assert credits.asked == [("bistro-fr", period, "fr")]  # in the tenant's language
        # billed again: the same invoice, the credit once
        again = (await billing.invoice("bistro-fr", period))["document"]
        assert again == doc

        with pytest.raises(Failure, match="invoice adjustments failed .*SLA ledger unreachable.*nothing was issued"):
            await billing.invoice("acme-eu", period)
        assert west.metrics.value("billing_requests_refused_total", code="adjustments_failed") == 1
        assert billing.store.numbers("meshd-eu") == [doc["number"]]
