"""What one daemon knows about one region's terms: filled slots and open tallies.

Terms are slots numbered 1, 2, 3... per region. Each slot is filled exactly
once in the KV bucket, by a committed decision or by an abandoned-term
record, and a daemon only ever votes in the slot right after the last one it
knows is filled. So every vote for a term is about the same question (the
action follows from the decisions before it), concurrent proposers converge
on one slot, and a stale proposer can only aim at a slot that is already
filled: its create fails. Pure logic, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .records import Record, Vote

MAX_AHEAD = 64
"""Votes for terms further ahead than this are not believable and are dropped."""


@dataclass
class RegionLedger:
    region: str
    filled: int = 0
    """Every slot up to this term is known filled."""
    records: dict[int, Record | None] = field(default_factory=dict)
    """Filled slots; None for a record that failed verification (the slot is used, the record ignored)."""
    tallies: dict[int, dict[str, Vote]] = field(default_factory=dict)
    opened: dict[int, float] = field(default_factory=dict)
    """Monotonic time this daemon first saw a vote for a term."""
    seen: dict[int, dict[str, float]] = field(default_factory=dict)
    """Monotonic time the latest copy of each voter's vote arrived: a vote is a lease its voter renews."""

    @property
    def next_term(self) -> int:
        return self.filled + 1

    def current(self) -> Record | None:
        """The latest committed decision, which sets the region's state."""
        for term in range(self.filled, 0, -1):
            record = self.records.get(term)
            if record is not None and record.committed:
                return record
        return None

    def previous(self, action: str) -> Record | None:
        for term in range(self.filled, 0, -1):
            record = self.records.get(term)
            if record is not None and record.committed and record.action == action:
                return record
        return None

    @property
    def failed_over(self) -> bool:
        current = self.current()
        return current is not None and current.action == "failover"

    def next_action(self) -> str:
        return "failback" if self.failed_over else "failover"

    def abandoned_in_a_row(self) -> int:
        """How many slots at the end are abandoned (or invalid) terms: the federation keeps failing to decide."""
        count = 0
        for term in range(self.filled, 0, -1):
            record = self.records.get(term)
            if record is not None and record.committed:
                break
            count += 1
        return count

    def fill(self, term: int, record: Record | None) -> None:
        """Record slot ``term`` (must be the next one) and forget tallies it settles."""
        if term != self.filled + 1:
            raise ValueError(f"{self.region}: slot {term} filled out of order (known up to {self.filled})")
        self.records[term] = record
        self.filled = term
        for old in [t for t in self.tallies if t <= term]:
            del self.tallies[old]
            self.opened.pop(old, None)
            self.seen.pop(old, None)

    def add_vote(self, vote: Vote, now: float) -> bool:
        """Keep ``vote`` (or a fresher copy of it) if it is for an open or future slot; True if it is new.

        ``now`` (monotonic) renews the vote's lease: see :meth:`yes_votes`.
        """
        if vote.term <= self.filled or vote.term > self.filled + MAX_AHEAD:
            return False
        tally = self.tallies.setdefault(vote.term, {})
        self.opened.setdefault(vote.term, now)
        known = tally.get(vote.voter)
        if known is not None and (known.yes, known.action, known.cast_at) != (vote.yes, vote.action, vote.cast_at):
            # A voter votes once per term; a second, different vote is not believed.
            return False
        tally[vote.voter] = vote
        self.seen.setdefault(vote.term, {})[vote.voter] = now
        return known is None

    def yes_votes(self, term: int, action: str, fresh_after: float, renewed_after: float = float("-inf")) -> list[Vote]:
        """Distinct yes votes for ``action`` in ``term``, cast after ``fresh_after`` (wall clock) and
        renewed by their voter after ``renewed_after`` (monotonic).

        A voter renews its vote while it is connected and still has its reason; a vote whose voter
        went quiet (cut off, paused, dead, or changed its mind) lapses, so a quorum is a quorum now.
        """
        seen = self.seen.get(term, {})
        return [v for v in self.tallies.get(term, {}).values()
                if v.yes and v.action == action and v.cast_at >= fresh_after
                and seen.get(v.voter, float("-inf")) >= renewed_after]

    def no_votes(self, term: int, action: str) -> list[Vote]:
        return [v for v in self.tallies.get(term, {}).values() if not v.yes and v.action == action]
