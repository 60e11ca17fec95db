"""The ``health:`` config section and how each probe's settings are checked.

Validation happens in two steps, because probe kinds come from plugins:

1. the section model (:class:`HealthConfig`) checks what every probe has
   (name, kind, interval, timeout, severity, hysteresis), as part of the
   daemon config, so its errors carry file, key and line like any other;
2. ``meshd_validate_config`` then checks each probe against its kind's own
   ``Settings`` model and the cross-field rules (unknown kind, duplicate
   name, warning above critical), reporting ``health.probes[<i>].<field>``.

The daemon builds its probes with :func:`resolve_probes`, the same function
step 2 uses, so what ``meshd check-config`` accepts is what runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ConfigDict, Field, ValidationError

import meshd
from meshd.config import ConfigIssue, LoadedConfig, issues_from_validation

from .probes import Probe, ProbeSettings
from .verdict import VerdictRules

SECTION = "health"


class ProbeSpec(ProbeSettings):
    """A probe as the section model sees it: the common fields, the kind's own ones kept for step 2."""

    model_config = ConfigDict(extra="allow", frozen=True)


class HealthConfig(meshd.StrictModel):
    """``health:`` in a region's config."""

    probes: list[ProbeSpec] | None = None
    """The probes; when absent, host resources only (see :data:`DEFAULT_PROBES`); ``[]`` means none."""
    verdict: VerdictRules = Field(default_factory=VerdictRules)
    alerts: bool = True
    """Raise ProbeFailing and RegionHealthDegraded alerts."""
    alert_refresh: meshd.Duration = Field(default=60.0, ge=1)
    """How often a firing alert is raised again, so the alerts plugin knows it still holds."""


DEFAULT_PROBES: tuple[dict[str, Any], ...] = (
    {"name": "cpu", "kind": "cpu", "interval": "10s", "timeout": "5s"},
    {"name": "memory", "kind": "memory", "interval": "10s", "timeout": "5s"},
    {"name": "disk", "kind": "disk", "interval": "30s", "timeout": "10s"},
    {"name": "load", "kind": "load", "interval": "10s", "timeout": "5s"},
)
"""What a region without ``health.probes`` watches: its host (``disk`` is the state directory's filesystem)."""

# (warning field, critical field) pairs checked for order on every kind that has them.
THRESHOLD_PAIRS = (("warning", "critical"), ("latency_warning", "latency_critical"))


@dataclass(frozen=True)
class ResolvedProbe:
    """A probe's kind class and its validated settings."""

    cls: type[Probe]
    settings: ProbeSettings


def _raw_probes(config: LoadedConfig) -> tuple[list[Any], bool]:
    """The probe entries as written (raw YAML data), and whether they are the defaults."""
    section = config.source.data.get(SECTION) if isinstance(config.source.data, dict) else None
    raw = section.get("probes") if isinstance(section, dict) else None
    if raw is None:
        return [dict(p) for p in DEFAULT_PROBES], True
    return list(raw), False


def resolve_probes(config: LoadedConfig, kinds: Mapping[str, type], *,
                   unavailable: type[Probe] | None = None) -> tuple[list[ResolvedProbe], list[ConfigIssue]]:
    """Every probe of ``config`` validated against its kind; the problems found, by key path and line.

    With ``unavailable``, a probe of an unknown kind is still returned, as that
    class (the daemon runs it as an always-failing probe, so a probe whose
    plugin went missing is visible rather than silently dropped).
    """
    raw, defaults = _raw_probes(config)
    base: tuple[str | int, ...] = (SECTION, "probes")
    issues: list[ConfigIssue] = []
    resolved: list[ResolvedProbe] = []
    seen: dict[str, int] = {}

    def issue(keypath: tuple[str | int, ...], message: str) -> None:
        issues.append(ConfigIssue(config.path, keypath, message, config.line_of(keypath)))

    for i, entry in enumerate(raw):
        where = base + (i,)
        if not isinstance(entry, dict):
            issue(where, "a probe must be a mapping with at least name and kind")
            continue
        kind = entry.get("kind")
        cls: type[Probe] | None = kinds.get(kind) if isinstance(kind, str) else None
        if cls is not None and not (isinstance(cls, type) and issubclass(cls, Probe)):
            issue((*where, "kind"), f"probe kind {kind!r} comes from a plugin that registered {cls!r}, "
                                    "which is not a meshd_plugins.health.probes.Probe subclass")
            cls = None
        elif cls is None:
            issue((*where, "kind"), f"unknown probe kind {kind!r} (known: {', '.join(sorted(kinds))})")
        if cls is None:
            if unavailable is not None:
                try:
                    resolved.append(ResolvedProbe(unavailable, ProbeSpec.model_validate(entry)))
                except ValidationError:
                    pass  # its common fields are wrong too: reported by the section model
            continue
        try:
            settings = cls.Settings.model_validate(entry, context={"base_dir": config.path.parent})
        except ValidationError as exc:
            if defaults:
                issues.extend(ConfigIssue(config.path, (SECTION,), f"default probe {entry['name']}: {e['msg']}")
                              for e in exc.errors(include_url=False))
            else:
                issues.extend(issues_from_validation(config.source, exc, where))
            continue
        except Exception as exc:  # a plugin's validator with a bug: say so, do not crash the check
            issue((*where, "kind"), f"the settings model of probe kind {kind!r} failed: {type(exc).__name__}: {exc}")
            continue
        if settings.name in seen:
            issue((*where, "name"),
                  f"probe name {settings.name!r} is already used by health.probes[{seen[settings.name]}]")
            continue
        seen[settings.name] = i
        for low, high in THRESHOLD_PAIRS:
            lo, hi = getattr(settings, low, None), getattr(settings, high, None)
            if lo is not None and hi is not None and lo > hi:
                issue(where + (low,), f"{low} ({lo:g}) is above {high} ({hi:g})")
        resolved.append(ResolvedProbe(cls, settings))
    return resolved, issues
