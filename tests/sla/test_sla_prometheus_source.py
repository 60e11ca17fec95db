"""Prometheus as an SLI source, against a real Prometheus (Debian's prometheus) scraping a loopback exporter."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from meshd.natsserver import free_port
from meshd.testing import running_daemons, until, wait_for, write_federation
from meshd_plugins.sla import PRECISION
from meshd_plugins.sla.promsource import QueryFailed, instant, read

PROMETHEUS = shutil.which("prometheus")
METRICS = b"""\
# TYPE svc_good_ratio gauge
svc_good_ratio{region="eu-west-1"} 0.75
svc_good_ratio{region="us-east-1"} 1
# TYPE svc_p95_seconds gauge
svc_p95_seconds{region="eu-west-1"} 0.24
"""


class Exporter(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(METRICS)))
        self.end_headers()
        self.wfile.write(METRICS)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp_path = tmp_path_factory.mktemp("prometheus")
    if PROMETHEUS is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("prometheus is missing: .ci/run installs the Debian package prometheus")
        pytest.skip("prometheus (Debian package prometheus) is not installed")
    exporter = ThreadingHTTPServer(("127.0.0.1", 0), Exporter)
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text("global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: svc\n    static_configs:\n"
                      f"      - targets: ['127.0.0.1:{exporter.server_address[1]}']\n")
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "prometheus.log", "wb"))
    url = f"http://127.0.0.1:{port}"
    try:
        def scraped() -> bool:
            try:
                return instant(url, 'svc_good_ratio{region="eu-west-1"}', 2.0) is not None
            except QueryFailed:
                return False
        wait_for(scraped, timeout=60, what="Prometheus up and the exporter scraped")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        exporter.shutdown()


def test_instant_queries_become_an_availability_and_a_p95(prometheus: str) -> None:
    reading = read(prometheus, 'svc_good_ratio{region="eu-west-1"}', 'svc_p95_seconds{region="eu-west-1"}', 2.0)
    assert reading.availability == 0.75
    assert reading.p95_ms == pytest.approx(240.0)
    assert read(prometheus, 'svc_good_ratio{region="ap-south-1"}', None, 2.0).availability is None  # no data


def test_a_query_that_cannot_be_one_number_is_refused_with_the_reason(prometheus: str) -> None:
    with pytest.raises(QueryFailed, match="2 series"):
        read(prometheus, "svc_good_ratio", None, 2.0)
    with pytest.raises(QueryFailed, match="not a share between 0 and 1"):
        read(prometheus, 'svc_good_ratio{region="eu-west-1"} * 3', None, 2.0)
    with pytest.raises(QueryFailed, match="parse error"):
        read(prometheus, "sum(", None, 2.0)


@pytest.mark.anyio
@pytest.mark.nats
async def test_a_daemon_records_its_rows_from_prometheus(prometheus: str, tmp_path: Path, nats_server: Any) -> None:
    configs = write_federation(tmp_path, ["eu-west-1"], nats_server.url, patch={"sla": {
        "sample_interval": "200ms", "history": str(tmp_path / "h.sqlite"),
        "prometheus": {"url": prometheus, "availability_query": 'svc_good_ratio{region="eu-west-1"}',
                       "latency_query": 'svc_p95_seconds{region="eu-west-1"}'}}})
    async with running_daemons(configs) as daemons:
        runtime = daemons["eu-west-1"].hooks.pm.get_plugin("sla").runtime
        await until(lambda: runtime.written >= 3, what="three rows from Prometheus")
        rows = [r for r in runtime.store.samples(0, 2**62, "eu-west-1") if r.source == "probes"]
    assert len(rows) >= 3
    assert all(r.up_ms == pytest.approx(0.75 * r.span_ms) and r.checks == 1 for r in rows)
    assert rows[0].histogram().quantile(0.95) == pytest.approx(240.0, rel=PRECISION)
