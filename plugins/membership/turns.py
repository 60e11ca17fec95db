"""Whose turn it is to confirm a suspicion, and to pronounce the verdict.

Every daemon hears an accusation (one broadcast). When every daemon that
heard it probed the suspect and broadcast its own confirmation, and then,
at the end of its own timer, its own verdict, one crash cost N broadcasts
of each: N x N envelopes to verify, plus their gossip. At 100 members packed
ten to a process on two cores that was seconds of CPU at exactly the moment
the verdict was due, and the last observers heard it seconds after the
first (bench/README.md, "Membership detection at scale").

So the daemons take turns. Each ranks itself among the daemons it holds
alive by a hash of (suspect, incarnation, daemon): rendezvous hashing, the
same order everywhere from the same view, with no message exchanged. The
first ``width`` ranks act at once; if the job is still undone (they were
down, frozen, or on the other side of a split), the next ranks act one
round later, and each round doubles the ranks that join it. A suspicion
therefore costs about ``width`` broadcasts whatever the federation's size,
and even when every early rank failed the last daemon's turn comes after
log2(N / width) rounds: still SWIM's log N.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def rank(me: str, peers: Iterable[str], suspect: str, incarnation: int) -> int:
    """``me``'s position (0 first) among ``me`` and ``peers`` for this suspicion of ``suspect``."""
    # One hasher per suspicion, copied per daemon: half the cost of hashing the whole key each time
    # (every daemon ranks all N at every new suspicion).
    base = hashlib.blake2b(f"{suspect}\0{incarnation}\0".encode(), digest_size=8)

    def key(daemon: str) -> bytes:
        h = base.copy()
        h.update(daemon.encode())
        return h.digest()

    mine = key(me)
    return sum(1 for p in peers if p != me and p != suspect and key(p) < mine)


def round_of(position: int, width: int) -> int:
    """The round (0 = at once) in which the daemon ranked ``position`` acts.

    Ranks ``[0, width)`` act in round 0, the next ``2 x width`` in round 1,
    the next ``4 x width`` in round 2: round r holds ``2**r x width`` ranks,
    so N daemons need at most ``1 + log2(N / width)`` rounds.
    """
    return (1 + max(0, position) // max(1, width)).bit_length() - 1
