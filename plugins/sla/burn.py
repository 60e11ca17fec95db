"""Error budgets and multiwindow, multi-burn-rate alerts (Google SRE workbook, ch. 5; Sloth), and incidents.

The budget of an availability objective ``a`` (percent) is ``1 - a/100``; a
burn rate over a window is the window's unavailability divided by that
budget (1x spends the budget exactly over the SLO period). A rule fires
while both its long and its short window burn at least its factor: the
long window proves the burn is significant, the short one that it is still
going on, so the alert resolves soon after the burn stops.

The engine is pure: it is fed samples and a clock (the sample times), so a
test can replay days of a recorded series in milliseconds. The daemon feeds
it each sample as it is written.

An incident opens at the first failing sample (availability below the
objective) of a run, is detected when a rule first fires during it, and is
resolved at the start of the first good sample of a good stretch
(``recover_samples`` long, 5 minutes by default): intermittent failures of a
slow burn stay one incident. A run that no rule ever noticed is not an
incident (a blip the budget absorbed).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

HOUR_MS = 3_600_000
MIN_MS = 60_000


@dataclass(frozen=True)
class BurnRule:
    name: str
    severity: str
    factor: float
    long_ms: int
    short_ms: int

    def scaled(self, scale: float) -> BurnRule:
        return BurnRule(self.name, self.severity, self.factor, max(1, round(self.long_ms * scale)),
                        max(1, round(self.short_ms * scale)))


RULES = (
    BurnRule("page_fast", "page", 14.4, 1 * HOUR_MS, 5 * MIN_MS),
    BurnRule("page_slow", "page", 6.0, 6 * HOUR_MS, 30 * MIN_MS),
    BurnRule("ticket_fast", "ticket", 3.0, 24 * HOUR_MS, 2 * HOUR_MS),
    BurnRule("ticket_slow", "ticket", 1.0, 72 * HOUR_MS, 6 * HOUR_MS),
)
"""The workbook's four rules for a 30-day SLO: 2 % of the budget in 1 h, 5 % in 6 h, 10 % in 1 d, 10 % in 3 d."""

WORKBOOK_PERIOD_MS = 30 * 24 * HOUR_MS


def rules_for_period(period_ms: int, rules: Iterable[BurnRule] = RULES) -> list[BurnRule]:
    """The rules for an objective judged over ``period_ms``: the same share of *its* budget in the same windows.

    A factor f spends f * window / period of the budget; keeping that share
    when the period is 28 days instead of 30 scales every factor by 28/30.
    """
    ratio = period_ms / WORKBOOK_PERIOD_MS
    return [BurnRule(r.name, r.severity, r.factor * ratio, r.long_ms, r.short_ms) for r in rules]


class Rolling:
    """Sums of covered and up time over the last ``length_ms``, updated per sample."""

    def __init__(self, length_ms: int):
        self.length_ms = length_ms
        self.items: deque[tuple[int, int, float]] = deque()
        self.span = 0
        self.up = 0.0

    def add(self, t_ms: int, span_ms: int, up_ms: float, now_ms: int) -> None:
        self.items.append((t_ms, span_ms, up_ms))
        self.span += span_ms
        self.up += up_ms
        self.evict(now_ms)

    def evict(self, now_ms: int) -> None:
        while self.items and self.items[0][0] < now_ms - self.length_ms:
            _, span, up = self.items.popleft()
            self.span -= span
            self.up -= up
        if not self.items:
            self.span, self.up = 0, 0.0  # no drift from float sums once the window is empty

    def unavailability(self) -> float | None:
        return max(0.0, 1.0 - self.up / self.span) if self.span else None


@dataclass
class Incident:
    region: str
    opened_ms: int
    detected_ms: int | None = None
    resolved_ms: int | None = None
    rules: list[str] = field(default_factory=list)

    @property
    def ttd_ms(self) -> int | None:
        return None if self.detected_ms is None else self.detected_ms - self.opened_ms

    @property
    def ttr_ms(self) -> int | None:
        return None if self.resolved_ms is None else self.resolved_ms - self.opened_ms

    def to_json(self) -> dict[str, object]:
        return {"region": self.region, "opened_ms": self.opened_ms, "detected_ms": self.detected_ms,
                "resolved_ms": self.resolved_ms, "ttd_ms": self.ttd_ms, "ttr_ms": self.ttr_ms,
                "rules": list(self.rules)}

    @classmethod
    def from_json(cls, doc: dict[str, object]) -> Incident:
        def opt(key: str) -> int | None:
            value = doc.get(key)
            return None if value is None else int(value)  # type: ignore[call-overload]
        return cls(str(doc["region"]), int(doc["opened_ms"]), opt("detected_ms"),  # type: ignore[call-overload]
                   opt("resolved_ms"), [str(r) for r in doc.get("rules") or []])  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Transition:
    """A rule started (``firing=True``) or stopped firing at ``at_ms``, with the burn rates that decided it."""

    rule: BurnRule
    firing: bool
    at_ms: int
    long_burn: float
    short_burn: float


class BurnEngine:
    """One region's burn rates against one availability objective; what fires, and its incidents."""

    def __init__(self, region: str, objective: Decimal, rules: Iterable[BurnRule] = RULES, scale: float = 1.0,
                 recover_samples: int = 30):
        if not Decimal(0) < objective < Decimal(100):
            raise ValueError(f"availability objective {objective} must be above 0 and below 100")
        self.region = region
        self.objective = objective
        self.budget = float(1 - objective / 100)
        self.rules = [r.scaled(scale) if scale != 1.0 else r for r in rules]
        lengths = sorted({ms for r in self.rules for ms in (r.long_ms, r.short_ms)})
        self.windows = {ms: Rolling(ms) for ms in lengths}
        self.firing: dict[str, bool] = {r.name: False for r in self.rules}
        self.recover_samples = max(1, recover_samples)
        self.run_start: int | None = None
        self.good_since: int | None = None
        self.good_run = 0
        self.open: Incident | None = None
        self.incidents: list[Incident] = []

    def burn(self, length_ms: int) -> float:
        """The burn rate over a window the rules use (0 with no data: nothing measured spends nothing)."""
        u = self.windows[length_ms].unavailability()
        return 0.0 if u is None else u / self.budget

    def burn_rates(self) -> dict[str, float]:
        return {window_name(ms): round(self.burn(ms), 4) for ms in self.windows}

    def add(self, t_ms: int, span_ms: int, up_ms: float, *, events: int | None = None) -> list[Transition]:
        """Feed one sample; the rules that changed state at its end.

        ``events``: the sample weighs that many events of which ``up_ms`` were
        good (latency: checks, and those within the objective) instead of its
        time; the windows still slide on time.
        """
        now = t_ms + span_ms
        weight = span_ms if events is None else events
        for w in self.windows.values():
            w.add(t_ms, weight, up_ms, now)
        failing = weight > 0 and up_ms / weight * 100 < float(self.objective)
        changes: list[Transition] = []
        for rule in self.rules:
            long_burn, short_burn = self.burn(rule.long_ms), self.burn(rule.short_ms)
            fire = long_burn >= rule.factor and short_burn >= rule.factor
            if fire != self.firing[rule.name]:
                self.firing[rule.name] = fire
                changes.append(Transition(rule, fire, now, long_burn, short_burn))
        self._incidents(t_ms, now, failing)
        return changes

    def _incidents(self, t_ms: int, now: int, failing: bool) -> None:
        any_firing = any(self.firing.values())
        if failing:
            if self.run_start is None:
                self.run_start = t_ms
            self.good_since, self.good_run = None, 0
        if self.open is None and any_firing and self.run_start is not None:
            self.open = Incident(self.region, self.run_start, now)
            self.incidents.append(self.open)
        if self.open is not None:
            for name, on in self.firing.items():
                if on and name not in self.open.rules:
                    self.open.rules.append(name)
        if not failing:
            if self.good_since is None:
                self.good_since = t_ms
            self.good_run += 1
            if self.good_run >= self.recover_samples:
                if self.open is not None:
                    self.open.resolved_ms = self.good_since
                    self.open = None
                self.run_start = None

    def budget_left(self, window: Rolling) -> float | None:
        """The fraction of the budget left over ``window`` (negative: overspent); None without data."""
        u = window.unavailability()
        return None if u is None else 1.0 - u / self.budget


def window_name(ms: int) -> str:
    if ms % HOUR_MS == 0:
        return f"{ms // HOUR_MS}h"
    if ms % MIN_MS == 0:
        return f"{ms // MIN_MS}m"
    return f"{ms / 1000:g}s"


def budget_left(availability: float | None, objective: Decimal) -> float | None:
    """The fraction of an objective's error budget left at ``availability`` (0..1); negative when overspent."""
    if availability is None:
        return None
    budget = float(1 - objective / 100)
    return 1.0 - (1.0 - availability) / budget
