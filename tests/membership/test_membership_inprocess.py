"""Several daemons in one process: what other plugins see (events, alerts, health) and bad input.

The first test runs over the in-memory transport (fast, and it can black-hole
a daemon at will); the others over a real nats-server.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import meshd
from meshd import hookimpl
from meshd.daemon import Daemon
from meshd.members import MemberState
from meshd.memtransport import MemoryNetwork
from meshd.plugins import Hooks
from meshd.testing import BUILTIN_PLUGINS, deep_merge, running_daemons, write_federation
from meshd.transport import RequestTimeout

OTHERS = [p for p in BUILTIN_PLUGINS if p != "membership"]
REGIONS = ["us-east-1", "us-west-2", "eu-west-1"]
# Faster than the default profile: these tests are about behaviour, not the defaults' timing.
QUICK = {"membership": {"probe_interval": "250ms", "probe_timeout": "150ms", "rejoin_grace": "300ms",
                        "reconnect_interval": "300ms"}}


class Recorder:
    """Records what the membership plugin tells other plugins."""

    def __init__(self) -> None:
        self.changes: list[tuple[meshd.Member, meshd.Member | None]] = []
        self.alerts: list[meshd.Alert] = []

    @hookimpl
    def meshd_member_changed(self, member: meshd.Member, previous: meshd.Member | None) -> None:
        self.changes.append((member, previous))

    @hookimpl
    def meshd_alert(self, alert: meshd.Alert) -> None:
        self.alerts.append(alert)

    def history(self, region: str) -> list[tuple[str | None, str]]:
        return [(p.state.value if p else None, m.state.value) for m, p in self.changes if m.region == region]


def recorder(daemon: Daemon) -> Recorder:
    return daemon.hooks.pm.get_plugin("recorder")


def swim(daemon: Daemon) -> Any:
    return daemon.hooks.pm.get_plugin("membership").swim


def state(daemon: Daemon, region: str) -> str | None:
    m = swim(daemon).table.get(region)
    return m.state.value if m else None


async def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await anyio.sleep(0.02)


def converged(daemons: dict[str, Daemon]) -> bool:
    return all(state(d, r) == "alive" for d in daemons.values() for r in daemons if r != d.region)


@contextlib.asynccontextmanager
async def memory_federation(tmp_path: Path, start: list[str] | None = None, patch: dict | None = None,
                            ) -> AsyncIterator[tuple[MemoryNetwork, dict[str, Daemon]]]:
    configs = write_federation(tmp_path, REGIONS, "nats://127.0.0.1:1", patch=deep_merge(QUICK, patch or {}))
    network = MemoryNetwork()
    daemons: dict[str, Daemon] = {}
    async with anyio.create_task_group() as tg:
        for region, path in configs.items():
            if start is not None and region not in start:
                continue
            hooks = Hooks.load(blocked=OTHERS, extra=[("recorder", Recorder())])
            daemons[region] = Daemon(hooks.load_config(path), hooks, transport=network.transport(region))
            await tg.start(daemons[region].run)
        try:
            yield network, daemons
        finally:
            for d in daemons.values():
                d.stop()


@pytest.mark.anyio
async def test_black_holed_daemon_events_and_alerts(tmp_path: Path) -> None:
    async with memory_federation(tmp_path) as (network, daemons):
        await wait_for(lambda: converged(daemons), what="convergence")
        a, victim = daemons["us-east-1"], daemons["eu-west-1"]
        await network.cut([victim.transport])
        await wait_for(lambda: state(a, "eu-west-1") == "dead" and state(daemons["us-west-2"], "eu-west-1") == "dead",
                       what="eu-west-1 dead")
        assert swim(victim).isolated
        # Hooks are delivered from the plugin's own queue: wait for them, then check them exactly.
        await wait_for(lambda: recorder(victim).history("eu-west-1")[-1:] == [("alive", "isolated")], what="hook")
        assert recorder(victim).history("eu-west-1") == [(None, "alive"), ("alive", "isolated")]
        # One call per real transition, with the right previous state.
        await wait_for(lambda: recorder(a).history("eu-west-1")[-1:] == [("suspect", "dead")], what="hook")
        assert recorder(a).history("eu-west-1") == [(None, "alive"), ("alive", "suspect"), ("suspect", "dead")]
        await wait_for(lambda: any(al.name == "RegionDown" for al in recorder(a).alerts), what="RegionDown")
        down = [al for al in recorder(a).alerts if al.name == "RegionDown"]
        assert down[0].labels == {"alertname": "RegionDown", "severity": "critical", "region": "eu-west-1"}
        assert down[0].status == "firing" and "eu-west-1" in down[0].annotations["summary"]
        # The isolated daemon declared no one dead.
        assert all(m.state != MemberState.DEAD for m in swim(victim).table)

        dead_inc = swim(a).table.get("eu-west-1").incarnation
        await network.heal([victim.transport])
        await wait_for(lambda: converged(daemons), what="re-merge")
        await wait_for(lambda: recorder(a).history("eu-west-1")[-1] == ("dead", "alive"), what="back, seen by a")
        await wait_for(lambda: recorder(victim).history("eu-west-1")[-1] == ("isolated", "alive"), what="rejoined")
        assert recorder(a).history("eu-west-1")[:3] == [(None, "alive"), ("alive", "suspect"), ("suspect", "dead")]
        assert swim(a).table.get("eu-west-1").incarnation > dead_inc
        await wait_for(lambda: any(al.status == "resolved" for al in recorder(a).alerts), what="resolve")
        resolved = [al for al in recorder(a).alerts if al.status == "resolved"]
        assert resolved[0].labels == down[0].labels
        assert all(al.labels.get("region") != "eu-west-1" for al in recorder(victim).alerts)


@pytest.mark.anyio
async def test_a_region_that_never_starts_is_dead_after_the_join_timeout(tmp_path: Path) -> None:
    async with memory_federation(tmp_path, start=REGIONS[:2], patch={"membership": {"join_timeout": "1s"}}) \
            as (_, daemons):
        a = daemons["us-east-1"]
        await wait_for(lambda: state(a, "eu-west-1") == "dead", what="the missing region marked dead")
        await wait_for(lambda: recorder(a).history("eu-west-1"), what="the hook")
        assert recorder(a).history("eu-west-1") == [(None, "dead")]
        await wait_for(lambda: any(al.labels.get("region") == "eu-west-1" for al in recorder(a).alerts),
                       what="RegionDown for the missing region")


@pytest.mark.anyio
async def test_incarnation_survives_a_restart(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    async with memory_federation(tmp_path / "one", start=REGIONS[:1]) as (_, daemons):
        first = swim(daemons["us-east-1"]).incarnation
    async with memory_federation(tmp_path / "one", start=REGIONS[:1]) as (_, daemons):
        # Same state directory: the new life outranks everything the old one said (its leave included).
        assert swim(daemons["us-east-1"]).incarnation > first + 1


@contextlib.asynccontextmanager
async def nats_federation(tmp_path: Path, nats_server: Any) -> AsyncIterator[dict[str, Daemon]]:
    configs = write_federation(tmp_path, REGIONS, nats_server.url, patch=QUICK)
    async with running_daemons(configs, extra_plugins=[("recorder", Recorder)], blocked=OTHERS) as daemons:
        await wait_for(lambda: converged(daemons), what="convergence")
        yield daemons


@pytest.mark.anyio
@pytest.mark.nats
async def test_health_is_gossiped_and_refutation_and_leave(tmp_path: Path, nats_server: Any) -> None:
    async with nats_federation(tmp_path, nats_server) as daemons:
        a, b, c = (daemons[r] for r in REGIONS)

        # Health: the region's own verdict reaches every peer's view and /status.
        await a.hooks.region_health_changed(a, meshd.HealthReport(meshd.HealthStatus.DEGRADED, ("db",)), None)
        await wait_for(lambda: all(swim(d).table.get("us-east-1").health == "degraded" for d in (b, c)),
                       what="health gossiped")
        doc = await b.status()
        assert {m["region"]: m["health"] for m in doc["members"]}["us-east-1"] == "degraded"
        # Other plugins hear of it too: a member_changed with the same state and the new health.
        await wait_for(lambda: any(m.region == "us-east-1" and m.health == "degraded" for m, _ in recorder(c).changes),
                       what="health change event")
        change = next((m, p) for m, p in recorder(c).changes if m.region == "us-east-1" and m.health == "degraded")
        assert change[1] is not None and change[1].health != "degraded"
        assert {m["region"]: m["state"] for m in doc["members"]}["us-west-2"] == "alive"  # itself

        # A false suspicion is refuted with a higher incarnation; nobody dies.
        inc = swim(b).incarnation
        await a.bus.publish("swim", "event", {"g": [{"r": "us-west-2", "s": "suspect", "i": inc}]})
        await wait_for(lambda: swim(b).incarnation > inc and all(
            (m := swim(d).table.get("us-west-2")) is not None and m.state == MemberState.ALIVE
            and m.incarnation > inc for d in (a, c)), what="refutation")
        assert b.metrics.value("membership_refutations_total") >= 1
        await wait_for(lambda: ("suspect", "alive") in recorder(c).history("us-west-2"), what="refutation hook")

        # Graceful leave: left everywhere, and no RegionDown for it.
        c.stop()
        await wait_for(lambda: state(a, "eu-west-1") == "left" and state(b, "eu-west-1") == "left", what="left")
        await wait_for(lambda: recorder(a).history("eu-west-1")[-1][1] == "left", what="left hook")
        history = recorder(a).history("eu-west-1")
        assert "dead" not in [new for _, new in history], history
        assert not [al for al in recorder(a).alerts if al.labels.get("region") == "eu-west-1"]


@pytest.mark.anyio
@pytest.mark.nats
async def test_bad_messages_are_counted_and_dropped(tmp_path: Path, nats_server: Any) -> None:
    async with nats_federation(tmp_path, nats_server) as daemons:
        a, b = daemons["us-east-1"], daemons["us-west-2"]
        await a.bus.publish("swim", "event", {"g": "not a list"})
        await a.bus.publish("swim", "event", {"g": [{"r": "atlantis-1", "s": "dead", "i": 1}]})
        await a.bus.publish("swim", "shout", {})
        with pytest.raises(RequestTimeout):
            await a.bus.request("swim", "ping", {"inc": -5}, "us-west-2", 0.5)

        def counted() -> bool:
            v = b.metrics.value
            return (v("membership_bad_messages_total", reason="bad_field") >= 1
                    and v("membership_bad_messages_total", reason="unknown_region") >= 1
                    and v("membership_bad_messages_total", reason="unknown_type") >= 1
                    and v("membership_bad_messages_total", reason="bad_incarnation") >= 1)

        await wait_for(counted, what="bad messages counted")
        # Nothing in the view changed, and the daemon still answers probes.
        assert converged(daemons)
        assert await swim(a)._ping("us-west-2", 2.0) is not None


@pytest.mark.anyio
async def test_reload_applies_new_timing(tmp_path: Path) -> None:
    import yaml

    async with memory_federation(tmp_path, start=REGIONS[:1]) as (_, daemons):
        d = daemons["us-east-1"]
        data = yaml.safe_load(d.config.path.read_text())
        data["membership"] = {"profile": "wan"}
        d.config.path.write_text(yaml.safe_dump(data))
        assert await d.reload()
        assert swim(d).timing.probe_interval == 2.0 and (await d.status())["membership"]["profile"] == "wan"
        data["membership"] = {"probe_interval": "100ms"}  # shorter than the lan timeout: rejected
        d.config.path.write_text(yaml.safe_dump(data))
        assert not await d.reload()
        assert swim(d).timing.probe_interval == 2.0


@pytest.mark.anyio
async def test_gossip_waits_for_a_peer_instead_of_retrying_claims_only_their_subject_could_take(
        tmp_path: Path) -> None:
    from meshd_plugins.membership.table import Claim

    async with memory_federation(tmp_path, start=REGIONS[:2], patch={"membership": {"join_timeout": "1s"}}) \
            as (_network, daemons):
        a = swim(daemons["us-east-1"])
        await wait_for(lambda: state(daemons["us-east-1"], "us-west-2") == "alive"
                       and state(daemons["us-east-1"], "eu-west-1") == "dead" and not len(a.queue),
                       what="one live peer and nothing left to gossip")
        rounds: list[int] = []
        gossip_once = a._gossip_once

        async def counted() -> int:
            rounds.append(await gossip_once())
            return rounds[-1]

        a._gossip_once = counted
        # A claim about the one live peer: a region is never told its own state by gossip, so no one can take it.
        a.queue.push(Claim("us-west-2", MemberState.ALIVE, a.table.get("us-west-2").incarnation, "us-east-1"))
        a._news.set()
        pings = daemons["us-east-1"].metrics.value("membership_messages_total", direction="out", type="ping")
        # Four probe rounds (250 ms each here) are five gossip intervals (200 ms): a retrying loop runs in them.
        await wait_for(lambda: daemons["us-east-1"].metrics.value("membership_messages_total", direction="out",
                                                                   type="ping") >= pings + 4, what="four probes")
        assert rounds == [0]
        assert len(a.queue) == 1  # still queued, for when a peer that may hear it is alive
