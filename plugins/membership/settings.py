"""The ``membership:`` config section: a timing profile and every knob overridable.

Two profiles ship: ``lan`` (the default, daemons whose NATS round trip is
well under a millisecond) and ``wan`` (daemons talking across continents,
or through a NATS super-cluster). Any knob set in the section overrides the
profile's value; :meth:`MembershipConfig.timing` resolves the two into one
:class:`Timing`. docs/membership.md explains each knob and why the ``lan``
values are faster than memberlist's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from pydantic import Field, model_validator

import meshd

from .turns import round_of

SECTION = "membership"
VERDICT_JUDGES = 2
"""Daemons that give their verdict as soon as a suspicion times out; the others wait a round for it."""


@dataclass(frozen=True)
class Timing:
    """The resolved timing of the SWIM protocol, in seconds and counts."""

    probe_interval: float
    """One peer is probed per interval (stretched by local-health awareness)."""
    probe_timeout: float
    """How long a direct ping waits for its ack (stretched by awareness)."""
    indirect_checks: int
    """How many other peers are asked to probe a peer that missed its ack."""
    suspicion_mult: float
    """Suspicion timeout floor = mult x max(1, log10 N) x probe_interval."""
    suspicion_max_timeout_mult: float
    """Suspicion timeout ceiling = this x the floor; it applies with no confirmation."""
    suspicion_confirmations: int
    """Independent confirmations that shrink the timeout from the ceiling to the floor (Lifeguard's K)."""
    confirm_suspicions: bool
    """On hearing a suspicion, probe the suspect once ourselves and confirm it if we cannot reach it either."""
    gossip_interval: float
    """How often queued membership updates are pushed to ``gossip_nodes`` random peers."""
    gossip_nodes: int
    retransmit_mult: int
    """Each update is piggybacked retransmit_mult x ceil(log10(N + 1)) times."""
    max_piggyback: int
    """Updates carried at most by one ping, ack or gossip message."""
    awareness_max: int
    """Local-health score ceiling: probe interval and timeout stretch up to this factor."""
    push_pull_interval: float
    """Full state exchange with one random peer (anti-entropy)."""
    reconnect_interval: float
    """Dead, left and never-seen regions are pinged one at a time at this pace, for ever."""
    rejoin_grace: float
    """After this daemon rejoins (bus back, or its event loop was frozen) it accuses no one for this long."""
    join_timeout: float
    """A configured region never heard from this long after start is marked dead (x max(1, log10 N))."""
    bus_check_timeout: float
    """How long this daemon waits for its own echo through NATS before it calls itself isolated."""

    def suspicion_bounds(self, members: int) -> tuple[float, float]:
        """(floor, ceiling) of the suspicion timeout in a federation of ``members`` regions."""
        floor = self.suspicion_mult * max(1.0, math.log10(max(members, 1))) * self.probe_interval
        return floor, floor * self.suspicion_max_timeout_mult

    def confirm_delay(self, position: int) -> float:
        """When the daemon ranked ``position`` (turns.py) probes a suspect that someone else accused.

        Twice K daemons go at once: K confirmations bring the timeout to its
        floor, and the other K stand in for daemons too slow to answer. The
        rest only come in, a probe round later and doubling each round, if
        those did not confirm (they reached the suspect, or were down too).
        """
        return round_of(position, 2 * max(1, self.suspicion_confirmations)) * self.probe_interval

    def verdict_delay(self, position: int) -> float:
        """How long past its suspicion timeout the daemon ranked ``position`` waits for someone's verdict.

        ``VERDICT_JUDGES`` daemons judge at once; their verdict is one
        broadcast that every daemon applies. The others judge themselves
        only if it has not come a probe round later (doubling each round),
        so a crash costs a couple of verdicts, not one per member.
        """
        return round_of(position, VERDICT_JUDGES) * self.probe_interval

    def retransmits(self, members: int) -> int:
        return max(1, self.retransmit_mult * math.ceil(math.log10(members + 1)))

    def join_syncs(self, members: int) -> int:
        """How many peers a joining (or rejoining) daemon exchanges full state with.

        Not every peer: with N daemons starting together that was N x (N - 1)
        exchanges of N claims each, which stalled 100 daemons for tens of
        seconds. A few answered exchanges (log2 N, at least 3 for the odd
        peer that is itself still joining) plus the join broadcast and
        gossip reach everyone; push-pull mends what they miss.
        """
        return min(max(0, members - 1), max(3, math.ceil(math.log2(max(members, 2)))))

    def join_deadline(self, members: int) -> float:
        """How long a configured region may stay unheard of after start before it is marked dead.

        Grows like the gossip's own spread (log N rounds), so that a large
        federation starting on a busy machine does not condemn the daemons
        that are merely last to start.
        """
        return self.join_timeout * max(1.0, math.log10(max(members, 1)))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


PROFILES: dict[str, Timing] = {
    # Faster than memberlist's LAN defaults (1 s / 500 ms, suspicion floor 4 s):
    # over NATS on one LAN a ping round trip is ~0.3 ms, so 250 ms is still
    # hundreds of times the normal answer time, and a 1 s suspicion floor is
    # what lets every survivor see a SIGKILL in ~1.5 s. The false-positive
    # safety comes from Lifeguard, not from long timers: indirect probes,
    # confirmations that start the timer at 6x the floor, refutation, the
    # local-health score, and never accusing while isolated, frozen or just
    # back (rejoin_grace).
    "lan": Timing(
        probe_interval=0.5, probe_timeout=0.25, indirect_checks=3,
        suspicion_mult=2.0, suspicion_max_timeout_mult=6.0, suspicion_confirmations=3,
        confirm_suspicions=True, gossip_interval=0.2, gossip_nodes=3, retransmit_mult=4,
        max_piggyback=8, awareness_max=8, push_pull_interval=30.0, reconnect_interval=2.0,
        rejoin_grace=3.0, join_timeout=30.0, bus_check_timeout=1.0,
    ),
    # Regions on different continents: round trips of 50-300 ms through a NATS
    # super-cluster, and links that hiccup. Still faster than memberlist's WAN
    # profile (5 s / 3 s), which assumes UDP over the open internet.
    "wan": Timing(
        probe_interval=2.0, probe_timeout=1.0, indirect_checks=3,
        suspicion_mult=4.0, suspicion_max_timeout_mult=6.0, suspicion_confirmations=3,
        confirm_suspicions=True, gossip_interval=0.5, gossip_nodes=4, retransmit_mult=4,
        max_piggyback=8, awareness_max=8, push_pull_interval=60.0, reconnect_interval=10.0,
        rejoin_grace=15.0, join_timeout=120.0, bus_check_timeout=3.0,
    ),
}


class MembershipConfig(meshd.StrictModel):
    """``membership:`` in a region's config; unset knobs come from ``profile``."""

    profile: Literal["lan", "wan"] = "lan"
    probe_interval: meshd.Duration | None = Field(default=None, gt=0)
    probe_timeout: meshd.Duration | None = Field(default=None, gt=0)
    indirect_checks: int | None = Field(default=None, ge=0, le=16)
    suspicion_mult: float | None = Field(default=None, ge=1)
    suspicion_max_timeout_mult: float | None = Field(default=None, ge=1)
    suspicion_confirmations: int | None = Field(default=None, ge=0, le=64)
    confirm_suspicions: bool | None = None
    gossip_interval: meshd.Duration | None = Field(default=None, gt=0)
    gossip_nodes: int | None = Field(default=None, ge=0, le=64)
    retransmit_mult: int | None = Field(default=None, ge=1, le=64)
    max_piggyback: int | None = Field(default=None, ge=1, le=64)
    awareness_max: int | None = Field(default=None, ge=1, le=64)
    push_pull_interval: meshd.Duration | None = Field(default=None, gt=0)
    reconnect_interval: meshd.Duration | None = Field(default=None, gt=0)
    rejoin_grace: meshd.Duration | None = Field(default=None, ge=0)
    join_timeout: meshd.Duration | None = Field(default=None, gt=0)
    bus_check_timeout: meshd.Duration | None = Field(default=None, gt=0)
    alerts: bool = True
    """Raise RegionDown when a region becomes dead in this daemon's view."""

    def timing(self) -> Timing:
        """The profile's timing with every knob set in this section applied over it."""
        overrides = {name: value for name, value in self.model_dump().items()
                     if name in Timing.__dataclass_fields__ and value is not None}
        return replace(PROFILES[self.profile], **overrides)

    @model_validator(mode="after")
    def _coherent(self) -> MembershipConfig:
        t = self.timing()
        if t.probe_timeout >= t.probe_interval:
            raise ValueError(
                f"probe_timeout ({t.probe_timeout:g}s) must be shorter than probe_interval "
                f"({t.probe_interval:g}s) (profile {self.profile!r} gives the values not set here)"
            )
        return self
