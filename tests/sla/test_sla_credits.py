"""SLA credits on real invoices: recorded history of last month, the billing plugin, the credit once."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshd.natsserver import free_port
from meshd.testing import running_daemons, until
from meshd_plugins.sla import Sample, SampleStore

from ..billing.test_billing_daemon import OTHER_PLUGINS, cli, configs, last_month, plugin

pytestmark = [pytest.mark.anyio, pytest.mark.nats]
HOUR = 3_600_000
ETC = Path(__file__).resolve().parents[2] / "etc"


def record_month(path: Path, region: str, period: str, down_hours: int) -> float:
    """A month of hourly rows with ``down_hours`` fully down; the availability it makes."""
    start = datetime.strptime(period, "%Y-%m").replace(tzinfo=UTC)
    start_ms = int(start.timestamp() * 1000)
    end_ms = int(datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC).timestamp() * 1000)
    hours = (end_ms - start_ms) // HOUR
    store = SampleStore(path)
    store.add([Sample(region, start_ms + i * HOUR, HOUR, 0.0 if i < down_hours else float(HOUR), 360)
               for i in range(hours)])
    store.close()
    return 1 - down_hours / hours


async def test_credits_land_on_the_right_invoices_once(tmp_path: Path, nats_server: Any,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    period, _ = last_month()
    paths = configs(tmp_path, nats_server.url, {"eu-west-1": free_port()})
    paths = {r: paths[r] for r in ("eu-west-1", "eu-central-1")}
    achieved = []
    for region, down in (("eu-west-1", 12), ("eu-central-1", 10)):
        history = tmp_path / f"sla-{region}.sqlite"
        achieved.append(record_month(history, region, period, down))
        data = yaml.safe_load(paths[region].read_text())
        data["sla"] = {"history": str(history)}
        paths[region].write_text(yaml.safe_dump(data))
        (paths[region].parent / "slo.yaml").write_text((ETC / "slo.yaml").read_text())  # the sample credit schedule
    mean = sum(achieved) / 2
    assert 0.95 < mean < 0.99  # starter (99.0): the 10 % step; business (99.95 / 99.5 / 95): the 25 % step
    async with running_daemons(paths, blocked=OTHER_PLUGINS) as ds:
        west = ds["eu-west-1"]
        await until(lambda: all(plugin(d, "metering").ingestor and plugin(d, "metering").ingestor.running
                                for d in ds.values()), what="metering ingestors running")
        billing = plugin(west, "billing")
        doc = (await billing.invoice("bistro-fr", period))["document"]
        [line] = [x for x in doc["lines"] if x["kind"] == "adjustment"]
        # starter is 45.00 EUR a month: 10 % of it.
        assert (line["source"], line["amount"], line["key"]) == ("sla", "-4.50", f"sla:{period}")
        assert line["description"] == (f"Crédit de service : disponibilité {mean * 100:.3f} % en {period} "
                                       "(objectif 99.0 %), 10 % de l'abonnement mensuel")
        again = (await billing.invoice("bistro-fr", period))["document"]
        assert again == doc  # billed twice: the same invoice, the credit once
        acme = (await billing.invoice("acme-eu", period))["document"]
        [line] = [x for x in acme["lines"] if x["kind"] == "adjustment"]
        assert line["key"] == f"sla:{period}" and line["description"].startswith("Service credit: availability")
        assert "25 % of the monthly fee" in line["description"]

        # Without going through billing: the list of credits owed, and a period that is not a month refused.
        code, out, _ = await cli(capsys, "--lang", "en", "sla", "credits", "--config", str(paths["eu-west-1"]),
                                 "--period", period, "--json")
        doc = json.loads(out)
        assert {c["tenant"]: c["percent_of_base"] for c in doc["credits"]} == {"bistro-fr": "-10", "acme-eu": "-25"}
        # globex-us is served by us-east-1, whose daemon is not running here: named, not given "no credit".
        assert code == 1 and list(doc["failed"]) == ["globex-us"] and "us-east-1" in doc["failed"]["globex-us"]
        code, _, err = await cli(capsys, "--lang", "en", "sla", "credits", "--config", str(paths["eu-west-1"]),
                                 "--period", "30d")
        assert code == 2 and "credits are per calendar month" in err
