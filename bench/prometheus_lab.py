"""A real Prometheus (Debian's ``prometheus``) scraping a lab's stable and canary services every second (tests, bench)."""

from __future__ import annotations

import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import yaml
from haproxy_lab import stop_process, system_binary

from meshd.natsserver import free_port
from meshd.testing import wait_for

WINDOW = "3s"
"""The rate window of the canary queries: several 1 s scrapes, short enough for a test's steps."""


def canary_queries(url: str) -> dict[str, str]:
    """The analysis.prometheus block of a pipeline that judges the lab's canary, the rollout's build only."""
    canary = 'role="canary",version="$version"'
    count = f"http_request_duration_seconds_count{{{canary}{{}}}}[{WINDOW}]"
    ok, every = count.replace("{}", ',code!~"5.."'), count.replace("{}", "")
    return {
        "url": url,
        "success_rate": f"100 * sum(rate({ok})) / sum(rate({every}))",
        "latency_ms": "1000 * histogram_quantile(0.99, sum by (le) "
                      f"(rate(http_request_duration_seconds_bucket{{{canary}}}[{WINDOW}])))",
        "timeout": "2s",
    }


class Prometheus:
    def __init__(self, workdir: Path, targets: dict[str, int]):
        """Scrape ``targets`` (``role`` label -> port on 127.0.0.1) every second."""
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "scrape_configs": [{"job_name": "services", "static_configs": [
                      {"targets": [f"127.0.0.1:{port}"], "labels": {"role": role}}
                      for role, port in targets.items()]}]}
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.logfile = workdir / "prometheus.log"
        self.log = open(self.logfile, "wb")
        self.proc = subprocess.Popen(
            [system_binary("prometheus"), f"--config.file={workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        """Blocking: from an event loop, call it in a worker thread."""
        wait_for(self._ready, timeout=30, what="prometheus ready")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited {self.proc.returncode}: {self.logfile.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()
