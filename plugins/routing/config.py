"""The ``routing`` config section and the checks pydantic alone cannot make."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PositiveFloat, ValidationError

import meshd
from meshd.config import ConfigError, ConfigIssue, Coordinates, LoadedConfig, RelPath, issues_from_validation
from meshd.yamlsource import YamlError, load_yaml

from .engine import LatencyModel, RoutingSettings, UnknownLocation, resolve_location


class LatencyModelConfig(meshd.StrictModel):
    """Distance to RTT when no table entry or measurement exists."""

    overhead_ms: float = Field(default=2.0, ge=0)
    path_inflation: float = Field(default=1.4, ge=1.0)
    fiber_km_per_ms: float = Field(default=200.0, gt=0)


class RoutingConfig(meshd.StrictModel):
    """``routing:`` in a region's daemon config. Every field has a default."""

    latency_tolerance_ms: float = Field(default=10.0, ge=0)
    latency_tolerance_ratio: float = Field(default=0.1, ge=0, le=1)
    carbon_aware: bool = False
    carbon_tolerance: float = Field(default=0.0, ge=0, description="gCO2e/kWh")
    sticky_ttl: meshd.Duration = 1800.0
    max_sessions: int = Field(default=100_000, ge=1)
    weight_by: Literal["weight", "capacity"] = "weight"
    rtt_file: RelPath | None = None
    rtt: dict[str, dict[str, PositiveFloat]] = Field(default_factory=dict)
    use_measured_rtt: bool = False
    assume_unseen_up: bool = True
    latency_model: LatencyModelConfig = Field(default_factory=LatencyModelConfig)
    locations: dict[str, Coordinates] = Field(default_factory=dict)
    service: bool = True
    """Answer route requests from other daemons on the bus."""
    max_cached_locations: int = Field(default=10_000, ge=16)

    def settings(self) -> RoutingSettings:
        m = self.latency_model
        return RoutingSettings(
            latency_tolerance_ms=self.latency_tolerance_ms, latency_tolerance_ratio=self.latency_tolerance_ratio,
            carbon_aware=self.carbon_aware, carbon_tolerance=self.carbon_tolerance, sticky_ttl=self.sticky_ttl,
            max_sessions=self.max_sessions, weight_by=self.weight_by, use_measured_rtt=self.use_measured_rtt,
            assume_unseen_up=self.assume_unseen_up,
            latency_model=LatencyModel(m.overhead_ms, m.path_inflation, m.fiber_km_per_ms),
            max_cached_locations=self.max_cached_locations,
        )

    def places(self) -> dict[str, tuple[float, float]]:
        return {name: (c.lat, c.lon) for name, c in self.locations.items()}


class RttFile(meshd.StrictModel):
    """An RTT table file: ``rtt: {FROM: {REGION: ms}}``."""

    rtt: dict[str, dict[str, PositiveFloat]] = Field(default_factory=dict)


def load_rtt_file(path: Path) -> tuple[dict[str, dict[str, float]], Any]:
    """The table in ``path`` and its YAML source (for line numbers); raise :class:`ConfigError`."""
    try:
        source = load_yaml(path)
    except YamlError as exc:
        raise ConfigError([ConfigIssue(exc.path, (), exc.message, exc.line, code="yaml")]) from None
    if not isinstance(source.data, dict):
        raise ConfigError([ConfigIssue(path, (), "expected a mapping with an rtt: key at the top level", 1)])
    try:
        table = RttFile.model_validate(source.data)
    except ValidationError as exc:
        raise ConfigError(issues_from_validation(source, exc)) from None
    return {k: dict(v) for k, v in table.rtt.items()}, source


def rtt_table(section: RoutingConfig) -> dict[str, dict[str, float]]:
    """The file's table overlaid with the inline one (inline rows win, cell by cell)."""
    merged: dict[str, dict[str, float]] = {}
    if section.rtt_file is not None:
        table, _ = load_rtt_file(section.rtt_file)
        merged.update({k: dict(v) for k, v in table.items()})
    for origin, row in section.rtt.items():
        merged.setdefault(origin, {}).update(row)
    return merged


def validate(config: LoadedConfig) -> list[ConfigIssue]:
    """References the model cannot check: the RTT file, its rows and columns, place names."""
    section: RoutingConfig = config.plugin("routing")
    regions = config.region_map.regions
    issues: list[ConfigIssue] = []
    places = section.places()

    def check_table(table: dict[str, dict[str, float]], file: Path, prefix: tuple[str, ...],
                    line_of: Any) -> None:
        for origin, row in table.items():
            try:
                resolve_location(origin, regions, places)
            except UnknownLocation:
                kp = (*prefix, origin)
                issues.append(ConfigIssue(file, kp, f"{origin!r} is not a region, a place from routing.locations, "
                                          "lat,lon, an ISO country code, an IATA city code or a continent "
                                          "or macro-region name", line_of(kp)))
            for target in row:
                if target not in regions:
                    kp = (*prefix, origin, target)
                    issues.append(ConfigIssue(file, kp, f"{target!r} is not a region of the region map (known: "
                                              f"{', '.join(sorted(regions))})", line_of(kp)))

    if section.rtt_file is not None:
        kp_file = ("routing", "rtt_file")
        if not section.rtt_file.is_file():
            issues.append(ConfigIssue(config.path, kp_file, f"{section.rtt_file}: file not found",
                                      config.line_of(kp_file), code="missing_file"))
        else:
            try:
                table, source = load_rtt_file(section.rtt_file)
            except ConfigError as exc:
                issues.extend(exc.issues)
            else:
                check_table(table, section.rtt_file, ("rtt",), source.line_of)
    check_table(dict(section.rtt), config.path, ("routing", "rtt"), config.line_of)
    for name in section.locations:
        if name in regions:
            kp = ("routing", "locations", name)
            issues.append(ConfigIssue(config.path, kp, f"{name!r} is already a region name; choose another place name",
                                      config.line_of(kp)))
    return issues
