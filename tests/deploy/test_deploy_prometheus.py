"""Prometheus as the analysis source: a real Prometheus scrapes the lab's services, the daemon asks it each interval."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from prometheus_lab import Prometheus, canary_queries

from meshd.deploydriver import ServerCounters
from meshd.natsserver import free_port
from meshd.prometheus import PrometheusUnreachable, QueryError, instant_query
from meshd.testing import until
from meshd_plugins.deploy import HAProxyDriver, judge

from .rolloutlab import Lab, write_pipeline
from .test_deploy_rollout import REGION, ended_version, federation, finished, rollout, runtime, started

pytestmark = [pytest.mark.anyio, pytest.mark.nats]


async def test_prometheus_unreachable_waits_then_a_healthy_canary_passes_and_a_slow_tail_is_rolled_back(
        tmp_path: Path, nats_server: Any, labs: dict[str, Lab]) -> None:
    lab = labs[REGION]
    prom = Prometheus(tmp_path / "prometheus", {"stable": lab.stable.port, "canary": lab.canary.port})
    try:
        lab.canary.build = "v2"
        lab.start_traffic(threads=3)
        # First pointed at a port nobody listens on: an error naming the URL, counted; the step waits.
        nobody = f"http://127.0.0.1:{free_port()}"
        analysis = {"source": "prometheus", "prometheus": canary_queries(nobody), "interval": "500ms"}
        async with federation(tmp_path, nats_server.url, lab, steps=[20, 100], bake="1s",
                              analysis=analysis) as (daemons, alerts):
            daemon, rt = daemons[REGION], runtime(daemons[REGION])
            await started(daemon)
            await until(lambda: rt.m_errors.labels("prometheus")._value.get() >= 2, what="two unreachable checks")
            waiting = await rollout(daemon)
            assert waiting.state == "running" and waiting.regions[REGION].step == 0
            assert not [e for e in waiting.log if e["kind"] == "check_passed"]
            assert f"Prometheus at {nobody}/api/v1/query is unreachable" in rt.reported["prometheus"]

            # The pipeline fixed to name the real one (a reload, as SIGHUP does): the same step carries on.
            write_pipeline(tmp_path / "region_pipeline.yaml", [[REGION]], {REGION: lab.driver()}, steps=[20, 100],
                           bake="1s", analysis={**analysis, "prometheus": canary_queries(prom.url)})
            rt.reload()
            await anyio.to_thread.run_sync(prom.wait_ready)
            # What each failure of Prometheus is to the daemon, against the real one and an absent one.
            with pytest.raises(QueryError, match="bad_data"):
                await instant_query(prom.url, "sum(rate(", 5)
            assert await instant_query(prom.url, 'up{job="no such job"}', 5) is None
            with pytest.raises(PrometheusUnreachable, match=f"Prometheus at {nobody}/api/v1/query is unreachable"):
                await instant_query(nobody, "up", 2)

            good = await until(lambda: finished(daemon), timeout=30, what="the healthy rollout to finish")
            assert good.state == "promoted", good.reason
            assert good.id == waiting.id
            assert "prometheus" not in rt.reported  # a check that reached Prometheus cleared the error
            unreachable = rt.m_errors.labels("prometheus")._value.get()

            # The next version: 1 request in 10 takes 600 ms more, a p99 of ~950 ms under a mean of ~60 ms.
            lab.canary.build, lab.canary.slow_rate, lab.canary.slow_latency = "v3", 0.1, 0.6
            lab.proxy.admin("set weight api/stable 100")
            lab.proxy.admin("set weight api/canary 0")
            await runtime(daemon).start_rollout("api", "v3", REGION, False)
            slow = await until(lambda: ended_version(daemon, "v3"), timeout=30, what="the slow rollout to end")
            assert rt.m_errors.labels("prometheus")._value.get() == unreachable  # none while it was up
            stats = await HAProxyDriver.build({k: v for k, v in lab.driver().items() if k != "kind"}).stats()
            pipeline = runtime(daemon).pipeline
            assert pipeline is not None
            thresholds = pipeline.plan("api").analysis
    finally:
        prom.stop()
    passed = [e["data"]["check"] for e in good.log if e["kind"] == "check_passed"]
    assert len(passed) == 2
    for check in passed:
        # Prometheus's numbers, not the driver's: a success rate over the window and a p99 from the histogram.
        assert check["success_rate"] == pytest.approx(100.0) and 0 < check["latency_ms"] <= 500

    assert slow.state == "rolled_back", slow.reason
    assert "p99" in slow.reason and "above 500 ms" in slow.reason
    assert lab.proxy.weights() == {"stable": 100, "canary": 0}
    assert len(alerts.named("RolloutRolledBack")) == 1
    # HAProxy's figure is a mean over the last 1024 requests: it stays under the threshold, the driver would pass.
    assert stats.canary.response_ms is not None and stats.canary.response_ms < 500
    assert judge(ServerCounters(0, 0), stats.canary, thresholds).verdict == "pass"
