"""In-process federations for the failover tests, driven by synthetic membership events.

:class:`Federation` runs one real :class:`meshd.Daemon` per region in the
test's event loop, with the failover plugin and a stand-in membership plugin
whose view the test sets (``fed.see(observer, region, "dead")``), on the
in-memory transport (fast, with cuts) or on a real nats-server.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from meshd import hookimpl
from meshd.daemon import Daemon
from meshd.members import Member, MemberState
from meshd.memtransport import MemoryNetwork
from meshd.plugins import Hooks
from meshd.testing import BUILTIN_PLUGINS, deep_merge, until, write_federation

ROOT = Path(__file__).resolve().parents[2]
SEVEN = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ca-central-1", "me-south-1", "ap-southeast-1"]
DR_CONFIG = ROOT / "etc" / "dr_config.yaml"


def subset_dr_config(source: Path, regions: list[str], out: Path) -> Path:
    """``source`` without the regions this federation does not have (a DR file must name real regions)."""
    raw = yaml.safe_load(source.read_text())
    kept = {}
    for name, entry in (raw.get("regions") or {}).items():
        if name in regions:
            entry = dict(entry or {})
            if entry.get("pair") not in regions:
                entry.pop("pair", None)
            entry["targets"] = [t for t in entry.get("targets", []) if t in regions]
            kept[name] = entry
    out.write_text(yaml.safe_dump({**raw, "regions": kept}, sort_keys=False))
    return out


class FakeMembership:
    """Stands in for the membership plugin: the test decides what this daemon sees."""

    def __init__(self) -> None:
        self.daemon: Any = None
        self.view: dict[str, Member] = {}

    @hookimpl
    def meshd_startup(self, daemon: Any) -> None:
        self.daemon = daemon

    @hookimpl
    def meshd_status(self) -> dict[str, Any]:
        return {"members": [m.to_json() for m in self.view.values()]}

    async def set(self, region: str, state: str, rtt_ms: float | None = 1.0, health: str | None = None) -> None:
        previous = self.view.get(region)
        member = Member(region, MemberState(state), incarnation=1, last_heard=time.time(), rtt_ms=rtt_ms,
                        health=health)
        self.view[region] = member
        await self.daemon.hooks.member_changed(self.daemon, member, previous)


class Vetoer:
    """A plugin that vetoes every proposal while ``reason`` is set."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.seen: list[Any] = []

    @hookimpl
    def meshd_failover_vote(self, proposal: Any) -> Any:
        import meshd

        self.seen.append(proposal)
        return meshd.Veto(self.reason) if self.reason else None


class Recorder:
    """Records every ``meshd_failover_committed`` call and every alert."""

    def __init__(self) -> None:
        self.decisions: list[Any] = []
        self.alerts: list[Any] = []

    @hookimpl
    def meshd_failover_committed(self, decision: Any) -> None:
        self.decisions.append(decision)

    @hookimpl
    def meshd_alert(self, alert: Any) -> None:
        self.alerts.append(alert)


class Federation:
    """Daemons of one federation running in the current event loop."""

    def __init__(self, tmp: Path, regions: list[str], tg: Any, *, nats_url: str | None = None,
                 patch: dict[str, Any] | None = None, dr_config: Path | None = DR_CONFIG, http_ports: bool = False,
                 extra_plugins: list[tuple[str, type]] = ()):
        self.tmp, self.regions, self.tg = tmp, regions, tg
        self.extra_plugins = list(extra_plugins)
        tmp.mkdir(parents=True, exist_ok=True)
        self.network = MemoryNetwork() if nats_url is None else None
        base = {"failover": {"tick": "0.05s", "poll_interval": "0.5s", "rejoin_grace": "0s"}}
        if dr_config is not None:
            base["failover"]["dr_config"] = str(subset_dr_config(dr_config, regions, tmp / "dr_config.yaml"))
        self.configs = write_federation(tmp, regions, nats_url or "nats://127.0.0.1:1",
                                        patch=deep_merge(base, patch or {}))
        self.daemons: dict[str, Daemon] = {}
        self.transports: dict[str, Any] = {}
        if http_ports:  # for the CLI, which finds the daemon by the port in its config
            from meshd.natsserver import free_port

            for region in regions:
                self.patch(region, {"http": {"port": free_port()}})

    def patch(self, region: str, patch: dict[str, Any]) -> None:
        path = self.configs[region]
        path.write_text(yaml.safe_dump(deep_merge(yaml.safe_load(path.read_text()), patch), sort_keys=False))

    def plugin(self, region: str, name: str) -> Any:
        return self.daemons[region].hooks.pm.get_plugin(name)

    def fake(self, region: str) -> FakeMembership:
        return self.plugin(region, "fake")

    def recorder(self, region: str) -> Recorder:
        return self.plugin(region, "recorder")

    def engine(self, region: str) -> Any:
        return self.plugin(region, "failover").engine

    async def start(self, region: str, *, see_all_alive: bool = True) -> Daemon:
        blocked = [p for p in BUILTIN_PLUGINS if p != "failover"]
        extra = [("fake", FakeMembership()), ("vetoer", Vetoer()), ("recorder", Recorder())]
        hooks = Hooks.load(blocked=blocked, extra=extra + [(name, cls()) for name, cls in self.extra_plugins])
        config = hooks.load_config(self.configs[region])
        transport = self.network.transport(region) if self.network is not None else None
        daemon = Daemon(config, hooks, transport=transport)
        self.daemons[region], self.transports[region] = daemon, daemon.transport
        await self.tg.start(daemon.run)
        if see_all_alive:
            for other in self.regions:
                if other != region:
                    await self.fake(region).set(other, "alive")
        await self.until(lambda: self.engine(region).synced, what=f"{region} read the bucket")
        return daemon

    async def start_all(self) -> None:
        for region in self.regions:
            await self.start(region)

    async def stop(self, region: str) -> None:
        daemon = self.daemons.pop(region)
        daemon.stop()
        with anyio.fail_after(10):
            while daemon.state != "stopped":
                await anyio.sleep(0.01)

    async def see(self, region: str, state: str, observers: Iterable[str] | None = None) -> None:
        """Every running daemon (or ``observers``) now sees ``region`` in ``state``."""
        for observer in list(observers if observers is not None else self.daemons):
            if observer != region and observer in self.daemons:
                await self.fake(observer).set(region, state)

    async def cut(self, regions: Iterable[str]) -> None:
        assert self.network is not None
        await self.network.cut([self.transports[r] for r in regions])

    async def heal(self, regions: Iterable[str]) -> None:
        assert self.network is not None
        await self.network.heal([self.transports[r] for r in regions])

    def decisions(self, region: str) -> list[dict[str, Any]]:
        from meshd_plugins.failover.status import decisions

        return decisions(self.engine(region))

    def decided(self, observer: str, region: str, count: int = 1) -> bool:
        return len([d for d in self.decisions(observer) if d["region"] == region]) >= count

    async def until(self, predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
        return await until(predicate, timeout, what)

    def considered(self, observer: str, region: str, outcome: str) -> float:
        """How often ``observer`` weighed a vote on ``region`` with ``outcome`` (its counter)."""
        return self.daemons[observer].metrics.value("failover_votes_considered_total", region=region,
                                                    outcome=outcome)

    async def past_hold_down(self, region: str) -> None:
        """Wait until every other daemon has weighed ``region`` a few times after seeing it alive for five
        hold-downs, finding no reason to vote: an automatic failback would have been voted by then."""
        for observer in (o for o in self.daemons if o != region):
            hold_down = self.engine(observer).cfg.hold_down
            await self.until(lambda o=observer: self.engine(o).alive_for(region) > 5 * hold_down,
                             what=f"{observer} saw {region} alive for five hold-downs")
            await self.weighed(observer, region, "no_reason")

    async def weighed(self, observer: str, region: str, outcome: str, times: int = 3) -> None:
        """Wait until ``observer`` has weighed ``region`` ``times`` more times with ``outcome``: proof that
        the code path a "nothing happened" assertion is about did run, with the state the test set up."""
        start = self.considered(observer, region, outcome)
        await self.until(lambda: self.considered(observer, region, outcome) >= start + times,
                         what=f"{observer} weighed {region} {times} more times ({outcome})")

    async def kv_slots(self, region: str) -> dict[str, list[int]]:
        from meshd_plugins.failover.commitstore import keys_in

        engine = self.engine(next(iter(self.daemons)))
        assert engine.kv is not None
        return keys_in(await engine.kv.keys())


@contextlib.asynccontextmanager
async def federation(tmp: Path, regions: list[str] | None = None, **kw: Any) -> AsyncIterator[Federation]:
    async with anyio.create_task_group() as tg:
        fed = Federation(tmp, regions or SEVEN, tg, **kw)
        try:
            yield fed
        finally:
            for daemon in fed.daemons.values():
                daemon.stop()


@pytest.fixture
def make_federation(tmp_path: Path) -> Callable[..., Any]:
    """``async with make_federation(regions=[...], nats_url=..., patch={...}) as fed: ...``"""
    counter = iter(range(100))

    def make(**kw: Any) -> Any:
        return federation(tmp_path / f"fed{next(counter)}", **kw)

    return make
