"""Prometheus metrics, one registry per daemon.

Each daemon owns its registry (not prometheus-client's global one) so that
several daemons can share a process in tests and benchmarks. Metric getters
are idempotent: a plugin service restarted by the supervisor, or a reload,
gets the same metric back instead of a duplicate-registration error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.registry import Collector

# The *_created series double the exposition for no use on a daemon's dashboards.
disable_created_metrics()  # type: ignore[no-untyped-call]

M = TypeVar("M", Counter, Gauge, Histogram)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The daemon's metrics; every name is prefixed ``meshd_``."""

    def __init__(self, const_labels: dict[str, str] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._metrics: dict[str, Counter | Gauge | Histogram] = {}
        self._const = dict(const_labels or {})

    def _get(self, kind: type[M], name: str, doc: str, labels: Sequence[str], **kw: object) -> M:
        full = name if name.startswith("meshd_") else f"meshd_{name}"
        metric = self._metrics.get(full)
        if metric is None:
            metric = kind(full, doc, labelnames=tuple(labels), registry=self.registry, **kw)  # type: ignore[arg-type]
            self._metrics[full] = metric
        elif not isinstance(metric, kind):
            raise TypeError(f"metric {full} already exists as a {type(metric).__name__}")
        return metric

    def counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
        return self._get(Counter, name, doc, labels)

    def gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        return self._get(Gauge, name, doc, labels)

    def histogram(self, name: str, doc: str, labels: Sequence[str] = (),
                  buckets: Sequence[float] | None = None) -> Histogram:
        kw = {"buckets": tuple(buckets)} if buckets else {}
        return self._get(Histogram, name, doc, labels, **kw)

    def register(self, collector: Collector) -> None:
        """Add a custom collector (from ``meshd_metrics``)."""
        self.registry.register(collector)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)

    def value(self, name: str, **labels: str) -> float:
        """Current value of a sample, 0 if never set: for ``meshd status`` and tests."""
        full = name if name.startswith("meshd_") else f"meshd_{name}"
        got = self.registry.get_sample_value(full, labels or None)
        if got is None and not full.endswith("_total"):
            got = self.registry.get_sample_value(full + "_total", labels or None)
        return got or 0.0
