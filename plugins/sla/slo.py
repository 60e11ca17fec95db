"""``slo.yaml``: objectives per plan, overrides per region or tenant, the windows they are judged over, credits.

Loaded with file:line errors like every meshd file. What pydantic cannot
check is checked here against the rest of the config: plans must exist (in
the billing matrix when billing is on, else in the tenant directory or the
builtin plans), regions in the region map, tenants in the directory; an SLI
must be one meshd measures; objectives must leave a budget (0 < a < 100).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from meshd.config import ConfigError, ConfigIssue, StrictModel, validate_source
from meshd.durations import Duration
from meshd.yamlsource import KeyPath, YamlError, load_yaml

SLIS = ("availability", "latency_p95_ms")
"""What meshd measures: availability in percent, the 95th percentile of latency in milliseconds."""

DEFAULT_OBJECTIVES: dict[str, dict[str, Decimal]] = {
    "starter": {"availability": Decimal("99.0"), "latency_p95_ms": Decimal(1000)},
    "professional": {"availability": Decimal("99.9"), "latency_p95_ms": Decimal(500)},
    "enterprise": {"availability": Decimal("99.99"), "latency_p95_ms": Decimal(200)},
}


def _decimal(value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError(f"{value!r} is not a number")
    try:
        # str() first: 99.9 written as a YAML float must be 99.9, not its binary neighbour.
        return Decimal(str(value))
    except ArithmeticError:
        raise ValueError(f"{value!r} is not a number") from None


Number = Annotated[Decimal, BeforeValidator(_decimal)]


class Window(StrictModel):
    """``{rolling: 28d}`` or ``{calendar: month}``."""

    rolling: Duration | None = None
    calendar: Literal["month"] | None = None

    @model_validator(mode="after")
    def _one(self) -> Window:
        if (self.rolling is None) == (self.calendar is None):
            raise ValueError("a window is either rolling: <duration> or calendar: month")
        if self.rolling is not None and self.rolling <= 0:
            raise ValueError("a rolling window needs a positive length")
        return self

    @property
    def length_ms(self) -> int:
        """The period a budget is spread over: a calendar month counts as the workbook's nominal 30 days."""
        return round((self.rolling or 30 * 86400.0) * 1000)

    def bounds(self, now_s: float) -> tuple[int, int]:
        """[start, end) in epoch ms at ``now_s``: the last ``rolling`` up to now, or the UTC month so far."""
        end = int(now_s * 1000)
        if self.calendar:
            day = datetime.fromtimestamp(now_s, UTC)
            return int(datetime(day.year, day.month, 1, tzinfo=UTC).timestamp() * 1000), end
        return end - self.length_ms, end

    @property
    def name(self) -> str:
        if self.calendar:
            return "month"
        assert self.rolling is not None
        days = self.rolling / 86400
        return f"{days:g}d" if days == int(days) else f"{self.rolling:g}s"


class CreditStep(StrictModel):
    """``below`` an availability (percent), credit ``percent`` of the monthly fee."""

    below: Number
    percent: Number


class PlanObjectives(StrictModel):
    objectives: dict[str, Number] = {}
    credits: list[CreditStep] = []
    windows: list[Window] | None = None
    """The plan's own windows (a contract judged over the calendar month only); None: the file's."""


class Override(StrictModel):
    objectives: dict[str, Number] = {}


DEFAULT_WINDOWS = [Window(rolling=28 * 86400.0), Window(rolling=30 * 86400.0), Window(calendar="month")]


class SloFile(StrictModel):
    windows: list[Window] = Field(default_factory=lambda: list(DEFAULT_WINDOWS))
    plans: dict[str, PlanObjectives] = Field(default_factory=lambda: {
        plan: PlanObjectives(objectives=dict(o)) for plan, o in DEFAULT_OBJECTIVES.items()})
    regions: dict[str, Override] = {}
    tenants: dict[str, Override] = {}


@dataclass(frozen=True)
class Objective:
    """What applies to one (plan, region, tenant): targets per SLI, and where each came from."""

    availability: Decimal | None
    latency_p95_ms: Decimal | None

    def to_json(self) -> dict[str, str | None]:
        return {"availability": _text(self.availability), "latency_p95_ms": _text(self.latency_p95_ms)}


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


@dataclass
class Slo:
    """The loaded file, and the objective for a plan, a region, a tenant (tenant beats region beats plan)."""

    file: SloFile
    path: Path | None = None

    def objective(self, plan: str | None, region: str | None = None, tenant: str | None = None) -> Objective:
        merged: dict[str, Decimal] = {}
        if plan is not None and plan in self.file.plans:
            merged.update(self.file.plans[plan].objectives)
        if region is not None and region in self.file.regions:
            merged.update(self.file.regions[region].objectives)
        if tenant is not None and tenant in self.file.tenants:
            merged.update(self.file.tenants[tenant].objectives)
        return Objective(merged.get("availability"), merged.get("latency_p95_ms"))

    @property
    def windows(self) -> list[Window]:
        return self.file.windows

    def windows_for(self, plan: str) -> list[Window]:
        """The windows a plan's objectives are judged over, the first one driving its burn-rate alerts."""
        body = self.file.plans.get(plan)
        return body.windows if body is not None and body.windows else self.file.windows

    @property
    def plans(self) -> list[str]:
        return list(self.file.plans)


Reporter = Callable[[KeyPath, str], None]


def check_slo(slo: SloFile, issue: Reporter, *, plans: Iterable[str] | None, regions: Iterable[str] | None,
              tenants: Iterable[str] | None) -> None:
    """Report what a valid model can still get wrong; a None reference set is not checked."""
    known_plans = set(plans) if plans is not None else None
    _check_windows(slo.windows, ("windows",), issue)
    for plan, body in slo.plans.items():
        if body.windows is not None:
            _check_windows(body.windows, ("plans", plan, "windows"), issue)
            if not body.windows:
                issue(("plans", plan, "windows"), "an empty list of windows: leave the key out to use the file's")
        if known_plans is not None and plan not in known_plans:
            issue(("plans", plan), f"unknown plan {plan!r} (known: {', '.join(sorted(known_plans))})")
        _check_objectives(body.objectives, ("plans", plan, "objectives"), issue)
        _check_credits(body.credits, ("plans", plan, "credits"), issue)
    for section, names in (("regions", regions), ("tenants", tenants)):
        known = set(names) if names is not None else None
        overrides: dict[str, Override] = getattr(slo, section)
        for name, override in overrides.items():
            if known is not None and name not in known:
                what = "region" if section == "regions" else "tenant"
                issue((section, name), f"unknown {what} {name!r} (known: {', '.join(sorted(known)) or 'none'})")
            _check_objectives(override.objectives, (section, name, "objectives"), issue)


def _check_windows(windows: list[Window], at: KeyPath, issue: Reporter) -> None:
    seen: dict[tuple[str, float], int] = {}
    for i, w in enumerate(windows):
        key = ("calendar", 0.0) if w.calendar else ("rolling", float(w.rolling or 0))
        if key in seen:
            issue((*at, i), f"window {w.name} overlaps windows[{seen[key]}], the same period: list it once")
        seen.setdefault(key, i)


def _check_objectives(objectives: dict[str, Decimal], at: KeyPath, issue: Reporter) -> None:
    for sli, value in objectives.items():
        where = (*at, sli)
        if sli not in SLIS:
            issue(where, f"unknown SLI {sli!r} (meshd measures: {', '.join(SLIS)})")
        elif sli == "availability" and not Decimal(0) < value < Decimal(100):
            issue(where, f"availability objective {value} is out of range: it must be above 0 and below 100 (percent)")
        elif sli == "latency_p95_ms" and not value > 0:
            issue(where, f"latency objective {value} is out of range: it must be a positive number of milliseconds")


def _check_credits(steps: list[CreditStep], at: KeyPath, issue: Reporter) -> None:
    previous: Decimal | None = None
    for i, step in enumerate(steps):
        if not Decimal(0) < step.below <= Decimal(100):
            issue((*at, i, "below"), f"{step.below} is out of range: an availability in percent, above 0, at most 100")
        if not Decimal(0) < step.percent <= Decimal(100):
            issue((*at, i, "percent"), f"{step.percent} is out of range: a credit in percent, above 0, at most 100")
        if previous is not None and step.below >= previous:
            issue((*at, i, "below"), f"steps go from the objective down: {step.below} is not below {previous}")
        previous = step.below


def load_slo(path: Path | None, *, plans: Iterable[str] | None = None, regions: Iterable[str] | None = None,
             tenants: Iterable[str] | None = None) -> Slo:
    """The objectives file (None: the builtin plans and windows); :class:`ConfigError` naming file:line for each problem."""
    if path is None:
        return Slo(SloFile())
    try:
        source = load_yaml(path)
    except YamlError as exc:
        raise ConfigError([ConfigIssue(exc.path, (), exc.message, exc.line, code="yaml")]) from None
    if source.data is None:
        source.data = {}
    value = validate_source(source, SloFile)
    issues: list[ConfigIssue] = []

    def issue(keypath: KeyPath, message: str) -> None:
        issues.append(ConfigIssue(source.path, keypath, message, source.line_of(keypath), code="sla"))

    check_slo(value, issue, plans=plans, regions=regions, tenants=tenants)
    if issues:
        raise ConfigError(issues)
    return Slo(value, path)


def slo_path(config: Any, configured: Path | None) -> Path | None:
    """The objectives file a config uses: ``sla.slo``, else ``slo.yaml`` beside the config if there is one."""
    if configured is not None:
        return configured
    beside = Path(config.path).parent / "slo.yaml"
    return beside if beside.exists() else None


def references(config: Any) -> dict[str, list[str] | None]:
    """The plans, regions and tenants an slo.yaml may name, from a loaded daemon config."""
    plans: set[str] = set(DEFAULT_OBJECTIVES)
    tenants: list[str] | None = None
    directory = getattr(config, "tenants", None)
    if directory is not None and hasattr(directory, "tenants"):
        tenants = list(directory.tenants)
        plans |= {t.plan for t in directory.tenants.values() if t.plan}
    billing = config.plugin_sections.get("billing")
    matrix_plans = _matrix_plans(getattr(billing, "matrix", None))
    if matrix_plans is not None:
        plans = set(matrix_plans)
    else:
        # Billing is idle in this region, but the federation's plans are still those of the matrix
        # `meshd init` put beside the region map: the sample slo.yaml names them all.
        plans |= set(_matrix_plans(Path(config.daemon.region_map).parent / "billing_matrix.yaml") or ())
    return {"plans": sorted(plans), "regions": list(config.region_map.regions), "tenants": tenants}


def _matrix_plans(matrix: Path | None) -> list[str] | None:
    if matrix is None or not Path(matrix).is_file():
        return None
    try:
        source = load_yaml(matrix)
    except YamlError:
        return None  # billing reports its own file
    data = source.data
    if not isinstance(data, dict) or not isinstance(data.get("plans"), dict):
        return None
    return [str(p) for p in data["plans"]]
