"""dr_config.yaml: where each region's traffic goes when it fails over.

For a failed region the target is, in order: its DR ``pair``, then its
ordered ``targets``, then (with ``rtt_fallback``) the remaining regions of
its jurisdiction by lowest measured RTT. A target never crosses the failed
region's jurisdiction: the file is rejected if it names one that does, and
:func:`choose_target` checks it again at decision time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from meshd.config import ConfigError, ConfigIssue, Name, RegionMap, StrictModel, validate_source
from meshd.yamlsource import YamlError, load_yaml


class DRTargets(StrictModel):
    """One region's failover targets."""

    pair: Name | None = None
    targets: list[Name] = Field(default_factory=list)


class DRConfig(StrictModel):
    """The whole file; every region of the map may have an entry (none is fine)."""

    rtt_fallback: bool = True
    regions: dict[Name, DRTargets] = Field(default_factory=dict)

    def order(self, region: str) -> list[str]:
        """The configured targets of ``region``: pair first, then the list, without repeats."""
        entry = self.regions.get(region)
        if entry is None:
            return []
        out: list[str] = []
        for name in ([entry.pair] if entry.pair else []) + list(entry.targets):
            if name not in out:
                out.append(name)
        return out


EMPTY = DRConfig()


def load_dr_config(path: Path, region_map: RegionMap) -> tuple[DRConfig | None, list[ConfigIssue]]:
    """Parse and check ``path`` against the region map; the config (None if unusable) and its issues."""
    try:
        source = load_yaml(path)
    except YamlError as exc:
        return None, [ConfigIssue(exc.path, (), exc.message, exc.line, code="yaml")]
    if source.data is None:
        return EMPTY, []
    try:
        dr = validate_source(source, DRConfig)
    except ConfigError as exc:
        return None, exc.issues
    issues: list[ConfigIssue] = []
    regions = region_map.regions

    def issue(keypath: tuple[str | int, ...], message: str) -> None:
        issues.append(ConfigIssue(path, keypath, message, source.line_of(keypath), code="dr_config"))

    for name, entry in dr.regions.items():
        if name not in regions:
            issue(("regions", name), f"region {name!r} is not in the region map (known: {', '.join(sorted(regions))})")
            continue
        home = regions[name].jurisdiction
        refs: list[tuple[tuple[str | int, ...], str]] = []
        if entry.pair is not None:
            refs.append((("regions", name, "pair"), entry.pair))
        refs += [(("regions", name, "targets", i), t) for i, t in enumerate(entry.targets)]
        for keypath, target in refs:
            if target not in regions:
                issue(keypath, f"{target!r} is not a region of the region map")
            elif target == name:
                issue(keypath, f"{name} cannot fail over to itself")
            elif regions[target].jurisdiction != home:
                issue(keypath, f"{target} is in jurisdiction {regions[target].jurisdiction}, {name} in {home}: "
                               "a failover never crosses a jurisdiction")
    return (dr if not issues else None), issues


@dataclass(frozen=True)
class Choice:
    """The outcome of target selection."""

    target: str | None
    tier: str
    """``pair``, ``list``, ``rtt``, or ``none``."""
    reason: str


def choose_target(failed: str, region_map: RegionMap, dr: DRConfig, eligible: Callable[[str], bool],
                  rtt_ms: Mapping[str, float | None]) -> Choice:
    """The region that takes ``failed``'s traffic, or none, never outside its jurisdiction.

    ``eligible(region)`` says whether a region can take traffic now (alive,
    not itself failed over); ``rtt_ms`` is the measured RTT per region for
    the last tier (None = not measured, ranked last).
    """
    regions = region_map.regions
    home = regions[failed].jurisdiction

    def ok(name: str) -> bool:
        return name != failed and name in regions and regions[name].jurisdiction == home and eligible(name)

    configured = dr.order(failed)
    for i, name in enumerate(configured):
        if ok(name):
            if i == 0 and dr.regions[failed].pair == name:
                return Choice(name, "pair", f"{name} is the DR pair of {failed}")
            return Choice(name, "list", f"{name} is on the DR list of {failed}")
    if dr.rtt_fallback:
        rest = sorted((n for n in regions if n not in configured and ok(n)),
                      key=lambda n: (rtt_ms.get(n) is None, rtt_ms.get(n) or 0.0, n))
        if rest:
            rtt = rtt_ms.get(rest[0])
            shown = "unmeasured" if rtt is None else f"{rtt:.1f} ms"
            return Choice(rest[0], "rtt", f"{rest[0]} has the lowest measured RTT ({shown}) in {home}")
    same = [n for n in regions if n != failed and regions[n].jurisdiction == home]
    if not same:
        why = f"no other region is in jurisdiction {home}"
    else:
        why = f"no eligible region in jurisdiction {home} ({', '.join(sorted(same))} unavailable or not allowed)"
    return Choice(None, "none", why)
