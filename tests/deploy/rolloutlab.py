"""A lab for rollouts: a real HAProxy per region in front of a stable and a canary version, steady traffic.

The ``labs`` fixture (conftest.py) makes one Lab per region.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from haproxy_lab import Client, HAProxy, Version

from meshd import hookimpl
from meshd.alerting import Alert

FAST = {"interval": "250ms", "min_requests": 10, "min_success_rate": 99, "max_latency_ms": 500, "failure_limit": 1}


class Traffic:
    """Client threads sending requests through HAProxy until stopped; what each version answered."""

    def __init__(self, port: int, threads: int = 3):
        self.port = port
        self.stop_event = threading.Event()
        self.counts: Counter[tuple[str, int]] = Counter()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        client = Client(self.port)
        try:
            while not self.stop_event.is_set():
                answer = client.get()
                with self.lock:
                    self.counts[answer] += 1
        finally:
            client.close()

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(30)


class Lab:
    def __init__(self, workdir: Path, region: str):
        self.region = region
        self.stable, self.canary = Version("stable"), Version("canary")
        self.proxy = HAProxy(workdir / f"haproxy-{region}", self.stable, self.canary)
        self.traffic: Traffic | None = None

    def driver(self) -> dict[str, Any]:
        return {"kind": "haproxy", "socket": str(self.proxy.socket), "backend": "api"}

    def start_traffic(self, threads: int = 3) -> Traffic:
        self.traffic = Traffic(self.proxy.port, threads)
        return self.traffic

    def close(self) -> None:
        if self.traffic is not None:
            self.traffic.stop()
        self.proxy.stop()
        self.stable.close()
        self.canary.close()


def write_pipeline(path: Path, stages: list[list[str]], drivers: dict[str, Any], *, steps: list[int] | None = None,
                   bake: str = "300ms", deadline: str = "30s", analysis: dict[str, Any] | None = None,
                   freeze: list[dict[str, Any]] | None = None, smoke: bool = False) -> Path:
    doc: dict[str, Any] = {
        "defaults": {"steps": steps or [5, 10, 25, 50, 100], "bake": bake, "progress_deadline": deadline, "smoke": smoke,
                     "analysis": {**FAST, **(analysis or {})}},
        "services": {"api": {"stages": [{"regions": s} for s in stages], "drivers": drivers}},
    }
    if freeze:
        doc["freeze"] = freeze
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def deploy_patch(pipeline: Path) -> dict[str, Any]:
    return {"deploy": {"pipeline": str(pipeline), "tick": "50ms", "lease": "3s"}}


class AlertLog:
    """A plugin that keeps every alert raised through the hook (the alerts plugin routes them too)."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    @hookimpl
    def meshd_alert(self, alert: Alert) -> None:
        self.alerts.append(alert)

    def named(self, name: str) -> list[Alert]:
        return [a for a in self.alerts if a.labels.get("alertname") == name]
