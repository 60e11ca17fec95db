"""Membership as the federation grows: the formulas that scale with N, and a 32-member join over real NATS.

The join test runs 32 daemons in one event loop (as bench/membership_bus.py
does with its worker processes): before the join was bounded, each daemon
exchanged full state with every other and gossiped every broadcast it heard
again, which is what kept 100 daemons from ever converging.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from meshd.members import MemberState
from meshd.testing import BUILTIN_PLUGINS, running_daemons
from meshd_plugins.membership.settings import PROFILES, VERDICT_JUDGES
from meshd_plugins.membership.table import Claim
from meshd_plugins.membership.turns import rank, round_of

from .conftest import numbered_federation, transitions_to

OTHERS = [p for p in BUILTIN_PLUGINS if p != "membership"]
MEMBERS = 32


def test_join_syncs_grow_with_log2_members_and_never_exceed_the_peers() -> None:
    lan = PROFILES["lan"]
    assert [lan.join_syncs(n) for n in (1, 2, 3, 4, 7, 25, 100, 250)] == [0, 1, 2, 3, 3, 5, 7, 8]
    for n in range(2, 1000, 37):
        assert lan.join_syncs(n) <= max(3, math.ceil(math.log2(n)))
        assert lan.join_syncs(n) <= n - 1


def test_join_deadline_grows_with_log10_members() -> None:
    lan, wan = PROFILES["lan"], PROFILES["wan"]
    assert lan.join_deadline(3) == lan.join_deadline(10) == 30.0
    assert lan.join_deadline(100) == pytest.approx(60.0)
    assert lan.join_deadline(250) == pytest.approx(30.0 * math.log10(250))
    assert wan.join_deadline(100) == pytest.approx(240.0)


def test_retransmits_and_suspicion_floor_grow_with_log_members() -> None:
    lan = PROFILES["lan"]
    assert [lan.retransmits(n) for n in (7, 9, 10, 99, 100, 250)] == [4, 4, 8, 8, 12, 12]
    floors = [lan.suspicion_bounds(n)[0] for n in (10, 100, 1000)]
    assert floors == pytest.approx([1.0, 2.0, 3.0])  # one more floor per decade: SWIM's log N


def test_turns_rank_every_daemon_once_the_same_everywhere_and_differently_per_suspicion() -> None:
    daemons = [f"r{i:02d}" for i in range(100)]
    shuffled = random.Random(7).sample(daemons, len(daemons))
    positions = [rank(d, daemons, "gone", 4) for d in daemons]
    assert sorted(positions) == list(range(100))
    assert [rank(d, shuffled, "gone", 4) for d in daemons] == positions  # no dependence on the view's order
    assert rank("r05", daemons, "r05", 4) == rank("r05", daemons[:5] + daemons[6:], "r05", 4)  # the suspect never counts
    # The first turns fall on different daemons for different suspicions (and incarnations): no one daemon
    # carries every confirmation.
    firsts = {d for suspect in range(30) for d in daemons if rank(d, daemons, f"x{suspect}", 1) < 6}
    assert len(firsts) > 50
    assert [rank(d, daemons, "gone", 5) for d in daemons] != positions


def test_turns_double_each_round_so_the_last_daemon_waits_log2_n_rounds() -> None:
    lan = PROFILES["lan"]
    width = 2 * lan.suspicion_confirmations
    assert Counter(round_of(p, width) for p in range(15 * width)) == {0: width, 1: 2 * width, 2: 4 * width,
                                                                       3: 8 * width}
    assert [lan.confirm_delay(p) for p in range(width + 1)] == [0.0] * width + [lan.probe_interval]
    assert [lan.verdict_delay(p) for p in range(VERDICT_JUDGES + 1)] == [0.0] * VERDICT_JUDGES + [lan.probe_interval]
    for members in (7, 25, 100, 250, 1000):
        last = members - 2  # the last rank among the survivors
        assert lan.verdict_delay(last) <= lan.probe_interval * math.log2(members / VERDICT_JUDGES)
        assert lan.confirm_delay(last) <= lan.probe_interval * max(0.0, math.log2(members / width))


def _federation(tmp_path: Path, size: int, nats_url: str) -> dict[str, Path]:
    # Push-pull off for the test's length, so every full-state exchange counted is a join's.
    return numbered_federation(tmp_path, size, nats_url, {"push_pull_interval": "1h"})


def _total(daemons: dict[str, Any], name: str, **labels: str) -> float:
    return sum(d.metrics.value(name, **labels) for d in daemons.values())


@pytest.mark.anyio
@pytest.mark.nats
async def test_32_members_join_with_log_n_exchanges_and_no_gossip_storm(tmp_path: Path, nats_server: Any) -> None:
    configs = _federation(tmp_path, MEMBERS, nats_server.url)
    began = time.monotonic()
    async with running_daemons(configs, blocked=OTHERS) as daemons:
        def converged() -> bool:
            return all(len(d.hooks.pm.get_plugin("membership").swim.table.in_states(MemberState.ALIVE))
                       == MEMBERS - 1 for d in daemons.values())

        deadline = time.monotonic() + 60
        while not converged():
            assert time.monotonic() < deadline, "32 daemons did not all see each other alive in 60 s"
            await anyio.sleep(0.05)

        # Every answered exchange shows as a request received and a reply received ("in sync"), so
        # twice the answered exchanges; exchanging with every peer was 32 x 31 of them.
        wanted = PROFILES["lan"].join_syncs(MEMBERS)
        # What a loaded machine adds on top of the join, each for a reason of its own: the 32 daemons
        # share one event loop, so one stall is 32 (a stall long enough for a death costs its daemon one
        # exchange), a daemon back from isolation exchanges as a joiner does, and push-pull exchanges
        # once per 24-36 s.
        extra = (_total(daemons, "membership_loop_stalls_total") + wanted * transitions_to(daemons, "isolated")
                 + MEMBERS * int((time.monotonic() - began) // (0.8 * PROFILES["lan"].push_pull_interval)))
        assert _total(daemons, "membership_messages_total", direction="in", type="sync") \
            <= 2 * (MEMBERS * wanted + extra)
        # Broadcasts heard by all are not gossiped again; before, every daemon queued 31 claims x 8
        # retransmits (thousands of gossip messages here). First sightings learned in a join sync still
        # spread, a few per daemon: a late joiner that cannot reach a region has no other way to hear of it.
        assert _total(daemons, "membership_messages_total", direction="out", type="gossip") <= 8 * MEMBERS
        assert transitions_to(daemons, "dead") == 0


@contextlib.asynccontextmanager
async def _gossip_of_us_east_1(tmp_path: Path) -> AsyncIterator[tuple[Any, Any, list[Any]]]:
    """A converged 3-member federation in memory: us-east-1's and us-west-2's engines, and every claim
    us-east-1 queues for gossip from then on."""
    from .test_membership_inprocess import converged, memory_federation, swim, wait_for

    async with memory_federation(tmp_path) as (_, daemons):
        await wait_for(lambda: converged(daemons), what="convergence")
        a, b = swim(daemons["us-east-1"]), swim(daemons["us-west-2"])
        pushed: list[Any] = []
        push = a.queue.push
        a.queue.push = lambda claim: (pushed.append(claim), push(claim))
        yield a, b, pushed


@pytest.mark.anyio
async def test_a_region_s_own_broadcast_is_not_gossiped_again_unless_it_refutes(tmp_path: Path) -> None:
    from meshd.members import Member

    from .test_membership_inprocess import wait_for

    async with _gossip_of_us_east_1(tmp_path) as (a, b, pushed):
        # A new incarnation of a region held alive, in its own broadcast (what a stall does): every
        # daemon got that message, so a does not gossip it again.
        inc = b.incarnation
        await b.set_health("degraded")
        await wait_for(lambda: a.table.get("us-west-2").incarnation > inc, what="the new incarnation")
        assert [c for c in pushed if c.region == "us-west-2"] == []

        # A refutation of a suspicion a holds is gossiped: it must reach whoever missed it.
        held = a.table.get("us-west-2")
        a.table.apply(Claim(held.region, MemberState.SUSPECT, held.incarnation, "eu-west-1"))
        assert isinstance(held, Member) and a.table.get("us-west-2").state == MemberState.SUSPECT
        await b._announce([Claim("us-west-2", MemberState.ALIVE, held.incarnation + 1, "us-west-2", b.health)])
        await wait_for(lambda: a.table.get("us-west-2").state == MemberState.ALIVE, what="the refutation")
        assert [(c.state, c.incarnation) for c in pushed if c.region == "us-west-2"] == \
            [(MemberState.ALIVE, held.incarnation + 1)]


@pytest.mark.anyio
async def test_an_accusation_heard_in_its_accuser_s_broadcast_is_not_gossiped_again(tmp_path: Path) -> None:
    from .test_membership_inprocess import wait_for

    async with _gossip_of_us_east_1(tmp_path) as (a, b, pushed):
        # b accuses eu-west-1 (alive in fact) in one broadcast: every daemon heard it, a does not relay it;
        # the refutation that follows is relayed.
        inc = a.table.get("eu-west-1").incarnation
        await b._announce([Claim("eu-west-1", MemberState.SUSPECT, inc, "us-west-2")])
        await wait_for(lambda: a.table.get("eu-west-1").incarnation > inc
                       and a.table.get("eu-west-1").state == MemberState.ALIVE, what="the refutation")
        states = [c.state for c in pushed if c.region == "eu-west-1"]
        assert MemberState.SUSPECT not in states and MemberState.ALIVE in states


@pytest.mark.anyio
async def test_a_stall_too_short_for_a_death_costs_no_broadcast_and_a_long_one_resyncs_with_one_peer(
        tmp_path: Path) -> None:
    """A starved process stalls again and again: each stall used to announce a new incarnation to every
    daemon and exchange full state with log2 N of them, which starved the others in turn (100 members
    under `bench/membership_bus.py --hog` never recovered after the load ended)."""
    from .test_membership_inprocess import converged, memory_federation, swim, wait_for

    async with memory_federation(tmp_path) as (_, daemons):
        await wait_for(lambda: converged(daemons), what="convergence")
        a, b = swim(daemons["us-east-1"]), swim(daemons["us-west-2"])
        floor = a.timing.suspicion_bounds(len(a.regions))[0]
        inc = a.incarnation

        def syncs(direction: str = "out") -> float:
            return daemons["us-east-1"].metrics.value("membership_messages_total", direction=direction, type="sync")

        stalls, sent, answered = daemons["us-east-1"].metrics.value("membership_loop_stalls_total"), syncs(), syncs("in")

        # Shorter than any peer's suspicion of us can last: distrust, but no news for anyone.
        await a._on_stall(floor - a._clock_tick - 0.05)
        assert not a.can_accuse()
        assert a.incarnation == inc and syncs() == sent
        assert daemons["us-east-1"].metrics.value("membership_loop_stalls_total") == stalls + 1

        # Long enough for a death: a new incarnation everywhere, and one exchange to catch up.
        await a._on_stall(floor)
        assert a.incarnation == inc + 1
        await wait_for(lambda: b.table.get("us-east-1").incarnation == inc + 1, what="the new incarnation")
        # Every exchange of a batch is sent before any answer comes back: once one is answered, the
        # batch is all there is (log2 N of them before this change).
        await wait_for(lambda: syncs("in") > answered, what="an answered exchange")
        assert syncs() == sent + 1
