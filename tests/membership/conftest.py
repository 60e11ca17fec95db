"""Fixtures for the membership tests: real nats-server, real `meshd run` processes.

The federations here run the membership plugin alone (the other builtin
plugins are disabled), so a failure points at membership and the daemons
stay light on a shared 2-core machine; the demo test runs everything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshd.bootstrap import init_federation
from meshd.testing import BUILTIN_PLUGINS, LocalFederation, deep_merge

OTHER_PLUGINS = [p for p in BUILTIN_PLUGINS if p != "membership"]


def numbered_federation(tmp_path: Path, size: int, nats_url: str,
                        membership: dict[str, Any] | None = None) -> dict[str, Path]:
    """Configs of a federation of ``size`` regions r00, r01... (more than the sample map has), membership only."""
    regions = {f"r{i:02d}": {"location": f"site {i}", "coordinates": {"lat": -60 + (i * 7) % 120,
                                                                      "lon": -170 + (i * 6) % 340},
                             "jurisdiction": "US", "endpoint": f"https://r{i:02d}.example.com", "capacity": 1000}
               for i in range(size)}
    (tmp_path / "regions.yaml").write_text(yaml.safe_dump({"regions": regions}))
    result = init_federation(federation="scale", regions_file=tmp_path / "regions.yaml", nats_url=nats_url,
                             out=tmp_path / "federation", http_base_port=0, force=True, samples=False)
    patch = {"nats": {"servers": [nats_url]}, "http": {"port": 0}, "plugins": {"disabled": OTHER_PLUGINS},
             "membership": membership or {}}
    for path in result.configs.values():
        path.write_text(yaml.safe_dump(deep_merge(yaml.safe_load(path.read_text()), patch)))
    return result.configs


class Views:
    """Questions about what every daemon of a federation sees, for wait_for predicates."""

    def __init__(self, fed: LocalFederation):
        self.fed = fed

    def state(self, observer: str, region: str) -> str | None:
        return self.fed.member_state(observer, region)

    def all_see(self, region: str, state: str, observers: Iterable[str] | None = None) -> bool:
        watchers = [o for o in (observers or self.fed.regions) if o != region]
        return all(self.state(o, region) == state for o in watchers)

    def converged(self, regions: Iterable[str] | None = None) -> bool:
        chosen = list(regions or self.fed.regions)
        return all(self.state(o, r) == "alive" for o in chosen for r in chosen if r != o)

    def incarnation(self, observer: str, region: str) -> int:
        return int(self.fed.members(observer).get(region, {}).get("incarnation", -1))

    def deaths(self, observer: str, region: str) -> float:
        """How many times ``observer`` has seen ``region`` become dead (its own counter)."""
        return self.fed.metric(observer, "meshd_membership_transitions_total", region=region, state="dead")


def transitions_to(daemons: dict[str, Any], state: str, *, but: str | None = None) -> float:
    """Transitions to ``state`` of any region (but ``but``) that the in-process ``daemons`` counted."""
    return sum(sample.value for d in daemons.values() for metric in d.metrics.registry.collect()
               if metric.name == "meshd_membership_transitions" for sample in metric.samples
               if sample.name.endswith("_total") and sample.labels.get("state") == state
               and sample.labels.get("region") != but)


@pytest.fixture
def membership_federation(tmp_path: Path) -> Iterator[Callable[..., tuple[LocalFederation, Views]]]:
    """Factory: a started federation running only the membership plugin, and its :class:`Views`."""
    made: list[LocalFederation] = []

    def make(regions: list[str], *, config: dict[str, Any] | None = None, **kwargs: Any) -> tuple[LocalFederation, Views]:
        patch = deep_merge({"plugins": {"disabled": OTHER_PLUGINS}}, config or {})
        fed = LocalFederation(tmp_path / f"fed{len(made)}", regions=regions, config=patch, **kwargs)
        made.append(fed)
        fed.start()
        views = Views(fed)
        fed.wait_for(views.converged, 30, what="every daemon sees every region alive")
        return fed, views

    try:
        yield make
    finally:
        for fed in made:
            fed.stop()
