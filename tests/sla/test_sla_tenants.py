"""A tenant's SLI: its serving regions' SLIs weighted by metered usage, else its home, else equally; credits use it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshd.natsserver import free_port
from meshd.testing import running_daemons, until
from meshd_plugins.sla import Histogram, Merged, mixture_quantile, shares, tenant_sli

from ..billing.test_billing_daemon import OTHER_PLUGINS, cli, configs, last_month, plugin, record
from .test_sla_credits import ETC, record_month


def test_shares_say_how_they_were_found() -> None:
    served = ["eu-west-1", "eu-central-1"]
    assert shares(served, {"eu-west-1": 30, "eu-central-1": 10}, "eu-central-1") == (
        {"eu-west-1": 0.75, "eu-central-1": 0.25}, "metered")
    # No usage metered (or metering could not say for every region): the home region, else equal weights.
    assert shares(served, {"eu-west-1": 0, "eu-central-1": 0}, "eu-central-1") == ({"eu-central-1": 1.0}, "home")
    assert shares(served, None, None) == ({"eu-west-1": 0.5, "eu-central-1": 0.5}, "equal")


def merged(availability: float | None, *latencies: float) -> Merged:
    hist = Histogram()
    for ms in latencies:
        hist.add(ms)
    return Merged(availability, hist.quantile(0.95), 1, 0, 0, len(latencies), hist=hist)


def test_the_tenant_sli_is_the_weighted_mixture() -> None:
    regions = {"a": merged(0.99, *[100.0] * 100), "b": merged(0.95, *[1000.0] * 10), "c": merged(None)}
    sli = tenant_sli({"a": 0.5, "b": 0.25, "c": 0.25}, regions)
    # c recorded nothing: left out, not counted as up; a and b weigh 2:1.
    assert sli.weights == pytest.approx({"a": 2 / 3, "b": 1 / 3})
    assert sli.availability == pytest.approx(0.99 * 2 / 3 + 0.95 / 3)
    # b's latencies are a third of the mixture whatever its sample count: its 1000 ms is the p95.
    assert sli.p95_ms == pytest.approx(1000.0, rel=0.05)
    assert mixture_quantile([(regions["a"].hist, 0.99), (regions["b"].hist, 0.01)], 0.95) == pytest.approx(
        100.0, rel=0.05)


@pytest.mark.anyio
@pytest.mark.nats
async def test_a_tenants_view_and_credit_follow_its_metered_share(tmp_path: Path, nats_server: Any,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    period, when = last_month()
    paths = configs(tmp_path, nats_server.url, {"eu-west-1": free_port()})
    paths = {r: paths[r] for r in ("eu-west-1", "eu-central-1")}
    achieved = {}
    for region, down in (("eu-west-1", 12), ("eu-central-1", 0)):
        history = tmp_path / f"sla-{region}.sqlite"
        achieved[region] = record_month(history, region, period, down)
        data = yaml.safe_load(paths[region].read_text())
        data["sla"] = {"history": str(history), "query_timeout": "1s"}
        paths[region].write_text(yaml.safe_dump(data))
        (paths[region].parent / "slo.yaml").write_text((ETC / "slo.yaml").read_text())
    expected = 0.75 * achieved["eu-west-1"] + 0.25 * achieved["eu-central-1"]
    assert expected * 100 < 99.0 < (achieved["eu-west-1"] + achieved["eu-central-1"]) / 2 * 100 + 0.6
    async with running_daemons(paths, blocked=OTHER_PLUGINS) as ds:
        await until(lambda: all(plugin(d, "metering").ingestor and plugin(d, "metering").ingestor.running
                                for d in ds.values()), what="metering ingestors running")
        for region, n in (("eu-west-1", 30), ("eu-central-1", 10)):
            await record(ds[region], [{"id": f"{region}-{i}", "source": "//api", "tenant": "bistro-fr",
                                       "meter": "api_requests", "time": when.isoformat(), "specversion": "1.0"}
                                      for i in range(n)])
        asker = str(paths["eu-west-1"])
        # us-east-1 is in the region map but not running: it serves neither tenant, so both views are whole.
        code, out, _ = await cli(capsys, "--lang", "en", "sla", "--config", asker, "--tenant", "bistro-fr",
                                 "--period", period, "--json")
        doc = json.loads(out)
        [window] = doc["windows"].values()
        assert code == 0 and doc["complete"] and (doc["plan"], doc["objective"]["availability"]) == ("starter", "99.0")
        assert window["weighting"] == "metered" and window["events"] == {"eu-west-1": 30, "eu-central-1": 10}
        assert window["weights"] == pytest.approx({"eu-west-1": 0.75, "eu-central-1": 0.25})
        assert window["availability"] == pytest.approx(expected) and window["availability_met"] is False
        assert window["budget_left"] == pytest.approx(1 - (1 - expected) / 0.01, abs=1e-6)

        code, out, _ = await cli(capsys, "--lang", "en", "sla", "--config", asker, "--tenant", "acme-eu",
                                 "--period", period)
        mean = (achieved["eu-west-1"] + achieved["eu-central-1"]) / 2
        # acme-eu used nothing and has no home here: equal weights, and the table says so.
        assert code == 0 and "eu-central-1 50 %, eu-west-1 50 % (equal, no routed share known)" in out
        assert f"{mean * 100:.3f} % !" in out

        # The credit is judged on the same tenant SLI: 98.7 % is under starter's 99.0 step, not its 95.0 one.
        [credit] = await plugin(ds["eu-west-1"], "sla").credits("bistro-fr", period, "en")
        assert f"availability {expected * 100:.3f} %" in credit.description and credit.percent_of_base == -10

        code, _, err = await cli(capsys, "--lang", "en", "sla", "--config", asker, "--tenant", "nobody")
        assert code == 2 and "tenant 'nobody' is not in the tenant directory" in err
