"""The membership table and SWIM's precedence rules, with no I/O.

A :class:`Claim` says "region R is in state S at incarnation I", as told by
a ping, an ack, a gossiped update or a full-state sync. :meth:`MemberTable.apply`
decides whether it changes this daemon's view, following memberlist:

* ``alive`` wins only with a strictly higher incarnation (a suspected or
  dead region must refute with a new one);
* ``suspect`` overrides ``alive`` at the same or a higher incarnation, and
  at the same incarnation adds a confirmation;
* ``dead`` and ``left`` override ``alive`` and ``suspect`` at the same or a
  higher incarnation; ``left`` also overrides ``dead`` (the region said
  goodbye), never the reverse;
* anything older than what we know is ignored.

Only the region itself ever raises its incarnation; claims about this
daemon are not applied here (the engine refutes them).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from meshd.members import Member, MemberState

CLAIM_STATES = (MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD, MemberState.LEFT)
"""States a claim may carry; ``isolated`` is only ever a daemon's own verdict, never gossiped."""

# Among claims at the same incarnation, the stronger one wins in a gossip queue.
_STRENGTH = {MemberState.ALIVE: 0, MemberState.SUSPECT: 1, MemberState.DEAD: 2, MemberState.LEFT: 3}


@dataclass(frozen=True, slots=True)
class Claim:
    """One membership update as it travels between daemons."""

    region: str
    state: MemberState
    incarnation: int
    source: str | None = None
    """Who accused (suspect/dead) or whose word this is; counted once per suspicion."""
    health: str | None = None
    """The region's own health verdict, carried with ``alive`` claims."""

    def outranks(self, other: Claim) -> bool:
        """True if this claim supersedes ``other`` about the same region (for the gossip queue)."""
        if self.incarnation != other.incarnation:
            return self.incarnation > other.incarnation
        return _STRENGTH[self.state] >= _STRENGTH[other.state]


@dataclass(frozen=True, slots=True)
class Change:
    """What applying a claim did to the view."""

    member: Member
    previous: Member | None
    """None when the region was first seen."""

    @property
    def transition(self) -> bool:
        """A state change (or a first sighting): what ``meshd_member_changed`` reports."""
        return self.previous is None or self.previous.state != self.member.state

    @property
    def confirmation(self) -> bool:
        """A further accuser of a suspicion already held (same state, same incarnation)."""
        return (self.previous is not None and self.previous.state == MemberState.SUSPECT
                and self.member.state == MemberState.SUSPECT
                and self.previous.incarnation == self.member.incarnation)


class MemberTable:
    """Every other region's :class:`Member`, as this daemon sees it."""

    def __init__(self, self_region: str):
        self.self_region = self_region
        self._members: dict[str, Member] = {}

    def __contains__(self, region: object) -> bool:
        return region in self._members

    def __iter__(self) -> Iterator[Member]:
        return iter(self._members.values())

    def __len__(self) -> int:
        return len(self._members)

    def get(self, region: str) -> Member | None:
        return self._members.get(region)

    def in_states(self, *states: MemberState) -> list[Member]:
        return [m for m in self._members.values() if m.state in states]

    def apply(self, claim: Claim) -> Change | None:
        """Apply ``claim``; return the change it made, or None if it told us nothing new."""
        if claim.region == self.self_region:
            raise ValueError("claims about this daemon are refuted, not applied")
        current = self._members.get(claim.region)
        new = self._decide(current, claim)
        if new is None:
            return None
        self._members[claim.region] = new
        return Change(new, current)

    def _decide(self, cur: Member | None, claim: Claim) -> Member | None:
        state, inc = claim.state, claim.incarnation
        if cur is None:
            return Member(claim.region, state, inc, health=claim.health if state == MemberState.ALIVE else None)
        if inc < cur.incarnation:
            return None
        if state == MemberState.ALIVE:
            if inc > cur.incarnation:
                return cur.with_(state=state, incarnation=inc, health=claim.health or cur.health)
            if cur.state == MemberState.ALIVE and claim.health and claim.health != cur.health:
                return cur.with_(health=claim.health)  # a detail, not a transition
            return None
        if state == MemberState.SUSPECT:
            if cur.state == MemberState.ALIVE:
                return cur.with_(state=state, incarnation=inc)
            if cur.state == MemberState.SUSPECT:
                # Same incarnation: a confirmation (the engine counts accusers); higher: a new suspicion.
                return cur.with_(incarnation=inc)
            # dead or left: only a newer life of the region can be suspected again
            return cur.with_(state=state, incarnation=inc) if inc > cur.incarnation else None
        if state == MemberState.DEAD:
            if cur.state in (MemberState.ALIVE, MemberState.SUSPECT):
                return cur.with_(state=state, incarnation=inc)
            if inc > cur.incarnation:
                return cur.with_(incarnation=inc)  # still dead (or left): a newer incarnation, no transition
            return None
        if state == MemberState.LEFT:
            if cur.state != MemberState.LEFT:
                return cur.with_(state=state, incarnation=inc)
            return cur.with_(incarnation=inc) if inc > cur.incarnation else None
        return None

    def touch(self, region: str, **fields: object) -> Member | None:
        """Update details (last_heard, rtt_ms, health) that are not transitions."""
        cur = self._members.get(region)
        if cur is None:
            return None
        self._members[region] = new = cur.with_(**fields)
        return new

    def claims(self) -> Iterable[Claim]:
        """The whole view as claims, for a full-state sync."""
        for m in self._members.values():
            yield Claim(m.region, m.state, m.incarnation, None, m.health)
