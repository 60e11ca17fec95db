"""region_pipeline.yaml: for each service, its stages of regions, traffic steps, analysis and freeze windows.

Checked against the region map and the failover plugin's DR pairs: every
problem is a :class:`meshd.config.ConfigIssue` naming the file, the key and
the line, so ``meshd check-config`` and ``meshd run`` (exit 2) say where to
fix it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from meshd.config import ConfigError, ConfigIssue, Name, RegionMap, StrictModel, validate_source
from meshd.durations import Duration
from meshd.yamlsource import KeyPath, YamlError, load_yaml
from meshd_plugins.alerts.timeintervals import TimeInterval

DEFAULT_STEPS = [5, 10, 25, 50, 100]
Percent = Annotated[float, Field(ge=0, le=100)]


class PrometheusQueries(StrictModel):
    """Instant queries (``/api/v1/query``) that measure the canary, each answering one number.

    ``$version``, ``$service`` and ``$region`` in a query are replaced by the
    rollout's version, service and the region being judged.
    """

    url: Annotated[str, Field(pattern=r"^https?://[^\s/]+(/\S*)?$")]
    """Prometheus's base URL, e.g. ``http://prometheus:9090`` (the API path is added)."""
    success_rate: Annotated[str, Field(min_length=1)]
    """A query giving the percent (0..100) of the canary's requests that were not HTTP 5xx."""
    latency_ms: Annotated[str, Field(min_length=1)]
    """A query giving the canary's p99 latency in milliseconds, e.g. ``histogram_quantile(0.99, ...) * 1000``."""
    timeout: Annotated[Duration, Field(gt=0)] = 5.0


class Analysis(StrictModel):
    """What a step's checks measure and when they fail (Flagger's defaults)."""

    source: Literal["driver", "probes", "prometheus"] = "driver"
    """``driver``: the load balancer's per-server counters; ``probes``: the region's health probes aimed at the
    canary; ``prometheus``: the instant queries of ``prometheus``."""
    interval: Annotated[Duration, Field(gt=0)] = 60.0
    min_success_rate: Percent = 99.0
    """Percent of canary requests that must not be HTTP 5xx."""
    max_latency_ms: Annotated[float, Field(gt=0)] = 500.0
    """Canary response time ceiling (the driver's latency figure, see docs/deploy.md)."""
    min_requests: Annotated[int, Field(ge=1)] = 50
    """Fewer canary requests than this in an interval: inconclusive, the step waits."""
    failure_limit: Annotated[int, Field(ge=1)] = 1
    """Failed checks (not necessarily in a row) before the rollout is rolled back."""
    probes: list[str] = Field(default_factory=list)
    """With ``source: probes``: the health probes (by name) that watch the canary."""
    min_samples: Annotated[int, Field(ge=1)] = 20
    """With ``source: probes``: fewer probe latency samples than this in an interval: inconclusive (no p99)."""
    prometheus: PrometheusQueries | None = None
    """With ``source: prometheus``: where to ask and what."""


class Stage(StrictModel):
    regions: list[Name] = Field(min_length=1)
    gate: Literal["auto", "manual"] = "auto"
    """``manual``: the stage waits for ``meshd deploy promote`` before its first step."""


class Driver(StrictModel, extra="allow"):
    """A traffic driver's settings; ``kind`` picks the driver (``haproxy``, ``command``, a plugin's)."""

    kind: Annotated[str, Field(min_length=1)]


class ServicePipeline(StrictModel):
    stages: list[Stage] = Field(min_length=1)
    steps: list[int] | None = None
    bake: Duration | None = None
    analysis: Analysis | None = None
    progress_deadline: Duration | None = None
    smoke: bool | None = None
    drivers: dict[Name, Driver] = Field(default_factory=dict)
    """The driver of each region this service is rolled out in."""


class Defaults(StrictModel):
    steps: list[int] = Field(default_factory=lambda: list(DEFAULT_STEPS))
    bake: Annotated[Duration, Field(ge=0)] = 300.0
    """How long each step runs (with its checks every ``analysis.interval``) before the next."""
    analysis: Analysis = Field(default_factory=Analysis)
    progress_deadline: Annotated[Duration, Field(gt=0)] = 3600.0
    """A step that has not moved on for this long (waiting on no traffic, a pause) is rolled back."""
    smoke: bool = True
    """Run the region's health probes once (``meshd smoke``) when it reaches 100 %; one critical fails the rollout."""


class PipelineFile(StrictModel):
    defaults: Defaults = Field(default_factory=Defaults)
    freeze: list[TimeInterval] = Field(default_factory=list)
    """Time intervals (the alert routes' syntax) during which no rollout starts."""
    services: dict[Name, ServicePipeline] = Field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """One service's pipeline with the defaults filled in."""

    service: str
    stages: list[Stage]
    steps: list[int]
    bake: float
    analysis: Analysis
    progress_deadline: float
    drivers: dict[str, dict[str, Any]]
    smoke: bool = True

    def regions(self) -> list[str]:
        return [r for stage in self.stages for r in stage.regions]


@dataclass(frozen=True)
class Pipeline:
    path: Path
    file: PipelineFile

    def plan(self, service: str) -> Plan:
        s, d = self.file.services[service], self.file.defaults
        return Plan(service, list(s.stages), list(s.steps or d.steps), d.bake if s.bake is None else s.bake,
                    s.analysis or d.analysis, s.progress_deadline or d.progress_deadline,
                    {r: dict(drv.model_dump()) for r, drv in s.drivers.items()},
                    d.smoke if s.smoke is None else s.smoke)

    def frozen(self, instant: datetime) -> str | None:
        """The name of the freeze window in force at ``instant``, if any."""
        for window in self.file.freeze:
            if window.contains(instant):
                return window.name
        return None


def check_steps(steps: list[int]) -> str | None:
    """Why ``steps`` is not a valid weight ladder, or None."""
    if not steps:
        return "at least one step is needed"
    for before, after in zip([0, *steps], steps, strict=False):
        if after > 100:
            return f"step {after} is above 100 (steps are percent of traffic to the canary)"
        if after <= before:
            return f"steps must increase: {after} comes after {before}"
    if steps[-1] != 100:
        return f"the last step must be 100 (all traffic on the new version), not {steps[-1]}"
    return None


def load_pipeline(path: Path, region_map: RegionMap, dr_pairs: Iterable[tuple[str, str]] = ()
                  ) -> tuple[Pipeline | None, list[ConfigIssue]]:
    """Parse and check ``path``; the pipeline (None if unusable) and its issues."""
    try:
        source = load_yaml(path)
    except YamlError as exc:
        return None, [ConfigIssue(exc.path, (), exc.message, exc.line, code="yaml")]
    if source.data is None:
        return Pipeline(path, PipelineFile()), []
    try:
        parsed = validate_source(source, PipelineFile)
    except ConfigError as exc:
        return None, exc.issues
    issues: list[ConfigIssue] = []

    def issue(keypath: KeyPath, message: str) -> None:
        issues.append(ConfigIssue(path, keypath, message, source.line_of(keypath), code="pipeline"))

    known = region_map.regions
    pairs = {frozenset(p) for p in dr_pairs if p[0] != p[1]}
    if (why := check_steps(parsed.defaults.steps)) is not None:
        issue(("defaults", "steps"), why)
    for name, svc in parsed.services.items():
        base: KeyPath = ("services", name)
        if svc.steps is not None and (why := check_steps(svc.steps)) is not None:
            issue(base + ("steps",), why)
        seen: dict[str, int] = {}
        for i, stage in enumerate(svc.stages):
            for j, region in enumerate(stage.regions):
                where = base + ("stages", i, "regions", j)
                if region not in known:
                    issue(where, f"region {region!r} is not in the region map (known: {', '.join(sorted(known))})")
                elif region in seen:
                    issue(where, f"region {region!r} is already in stage {seen[region] + 1}")
                else:
                    seen[region] = i
                    if region not in svc.drivers:
                        issue(base + ("drivers",), f"no driver for region {region!r} (add drivers.{region})")
            for a in stage.regions:
                for b in stage.regions:
                    if a < b and frozenset((a, b)) in pairs:
                        issue(base + ("stages", i, "regions"),
                              f"{a} and {b} are a DR pair (dr_config.yaml): never roll both out in one stage")
        for region in svc.drivers:
            if region not in seen:
                issue(base + ("drivers", region), f"region {region!r} is in no stage of {name}")
        analysis = svc.analysis or parsed.defaults.analysis
        at: KeyPath = base + ("analysis",) if svc.analysis else ("defaults", "analysis")
        if analysis.source == "probes" and not analysis.probes:
            issue(at + ("probes",), "analysis.source is probes but no probe is named")
        if analysis.source == "prometheus" and analysis.prometheus is None:
            issue(at + ("source",), "analysis.source is prometheus but there is no analysis.prometheus "
                                    "(url, success_rate and latency_ms queries)")
    return (Pipeline(path, parsed) if not issues else None), issues


def check_service(pipeline: Pipeline, service: str) -> str | None:
    """Why ``service`` cannot be rolled out with ``pipeline``, or None."""
    if service not in pipeline.file.services:
        known = ", ".join(sorted(pipeline.file.services)) or "none"
        return f"service {service!r} is not in {pipeline.path} (known: {known})"
    return None
