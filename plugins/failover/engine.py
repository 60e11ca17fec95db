"""One daemon's part in failover and failback: vote, commit through the KV bucket, apply.

The protocol, per region R of the federation:

* Terms are slots 1, 2, 3... A daemon votes only in the slot after the last
  one it knows is filled, and the action of that slot follows from the
  decisions before it (failover when R is in service, failback when it is
  failed over), so every vote in a slot answers the same question.
* A daemon votes yes on its own evidence: R dead in its membership view
  (failover), R alive for the hold-down (failback), or an operator's
  request. It never votes while isolated, nor when its own view does not
  show a quorum of regions alive. A plugin veto makes it vote no. It
  persists the vote (fsync) in its audit log before it sends it, and votes
  once per (R, term), across restarts.
* Votes are signed envelopes broadcast on ``meshd.<fed>.failover.<sender>``
  and renewed by their voter every ``rebroadcast`` seconds while it is
  connected and still has its reason; a vote not renewed within the
  ``lease`` lapses (both follow the membership timing profile). Every daemon counts them, and any daemon that sees
  a quorum of live yes votes creates the slot's key in the KV bucket with
  the decision and the votes that prove it. The create is the fencing point: exactly one create
  per slot succeeds, every other daemon reads and applies that one.
* A slot that does not reach quorum within ``vote_timeout`` (or cannot,
  because of no votes) is filled with an "abandoned" record, so the next
  term opens and a late quorum for the old term has nowhere to commit.
* Every daemon applies every committed decision in term order, including
  daemons that start later (they read the bucket at start and poll it).

This module is the vote loop: what this daemon sees, whether it votes, and
the periodic tick. The rest, each on its own: :mod:`.commitstore` (the KV
bucket), :mod:`.committer` (filling a slot: commit or abandon, and the
target), :mod:`.learning` (reading filled slots in order), :mod:`.operator`
(operators' requests), :mod:`.applier` (acting on decisions), :mod:`.ledger`
(per-region terms and tallies, no I/O).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from meshd.backoff import exponential
from meshd.decisions import Proposal
from meshd.i18n import Translator
from meshd.identity import Signer, TrustStore, load_private_key
from meshd.members import Member, MemberState

from .applier import Applier
from .audit import AuditLog
from .commitstore import CommitStore
from .committer import Committer
from .config import (
    LAN_PROBE_INTERVAL,
    LEASE_RENEWALS,
    FailoverConfig,
    dr_config_path,
    strict_majority,
    vote_timing,
)
from .drconfig import EMPTY, DRConfig, load_dr_config
from .learning import Learner
from .ledger import MAX_AHEAD, RegionLedger
from .operator import BUS_TYPE as REQUEST
from .operator import OperatorRequests
from .records import InvalidRecord, Proof, Vote, parse_vote_body
from .statelog import StateLog

if TYPE_CHECKING:
    from meshd.daemon import Daemon

BUS_KIND = "failover"
MAX_BACKOFF = 300.0
LEASE = LEASE_RENEWALS * LAN_PROBE_INTERVAL
"""The lease under the default (``lan``) timing; a daemon uses :attr:`FailoverEngine.lease`.

A vote counts while its voter renews it: it resends it every ``rebroadcast`` seconds for as long as it
is connected and still has its reason. A quorum of votes renewed within the lease is a quorum now, not
one gathered before a partition. Both follow the membership profile (see :func:`.config.vote_timing`)."""


class FailoverEngine:
    """Per-daemon failover state and the tasks that drive it."""

    def __init__(self, daemon: Daemon):
        self.daemon = daemon
        self._vote_timing_of: tuple[object, tuple[float, float]] = (None, (0.0, 0.0))
        self.region = daemon.region
        self.log = daemon.log.getChild("failover")
        self.states = StateLog(self.log)
        self.states.assume("audit", "ok")
        self.states.assume("isolated", "False")
        self.trust = TrustStore(daemon.config.trust)
        self.ledgers: dict[str, RegionLedger] = {r: RegionLedger(r) for r in daemon.regions}
        self.view: dict[str, Member] = {}
        self.since: dict[str, float] = {}
        self.bus_down = False
        self.member_isolated = False
        self.connected_since = time.monotonic()
        self.synced = False
        self.my_votes: dict[tuple[str, int], Vote] = {}
        self.vote_floor: dict[str, int] = {}
        self._floor_after_sync = False
        self._vote_lock = anyio.Lock()
        self._evaluating: set[str] = set()
        self._last_rebroadcast = 0.0
        self._last_poll = 0.0
        self.dr: DRConfig = EMPTY
        self.audit: AuditLog | None = None
        self.applier = Applier(daemon, self.ledgers, self.translator)
        self.store = CommitStore(self)
        self.learner = Learner(self)
        self.committer = Committer(self)
        self.operator = OperatorRequests(self)
        m = daemon.metrics
        self.m_votes = m.counter("failover_votes_cast_total", "Votes this daemon cast, by action and vote",
                                 ["action", "vote"])
        self.m_considered = m.counter(
            "failover_votes_considered_total", "Times this daemon weighed a vote on a region's open term, by "
            "outcome: vote, no_reason, awaiting_operators (requests short of a basis), not_now (cannot vote "
            "now: isolated, already voted, backing off...)", ["region", "outcome"])
        self.m_invalid = m.counter("failover_invalid_total", "Votes, requests and records rejected, by kind",
                                   ["kind"])

    # ------------------------------------------------------------ config-derived facts

    @property
    def cfg(self) -> FailoverConfig:
        return self.daemon.plugin_config("failover")

    @property
    def configured(self) -> int:
        return len(self.ledgers)

    @property
    def quorum(self) -> int:
        return max(self.cfg.quorum or 0, strict_majority(self.configured))

    @property
    def isolated(self) -> bool:
        return self.bus_down or self.member_isolated or not self.daemon.bus.connected

    bus_kind = BUS_KIND

    def _vote_timing(self) -> tuple[float, float]:
        # Read for every region on every tick (quorum checks): derived once per config, not each time
        # (the membership section's timing is a model dump and a dataclass copy). A reload brings a new config.
        config = self.daemon.config
        if self._vote_timing_of[0] is not config:
            self._vote_timing_of = (config, vote_timing(config))
        return self._vote_timing_of[1]

    @property
    def rebroadcast(self) -> float:
        return self._vote_timing()[0]

    @property
    def lease(self) -> float:
        return self._vote_timing()[1]

    @property
    def kv(self) -> Any:
        return self.store.kv

    @property
    def kv_ok(self) -> bool:
        return self.store.available

    @property
    def kv_replicas(self) -> int | None:
        return self.store.replicas

    def translator(self) -> Translator:
        return Translator(self.daemon.config.daemon.lang)

    def load_dr(self) -> None:
        path = dr_config_path(self.daemon.config)
        if not path.is_file():
            self.dr = EMPTY
            self.log.warning("no DR config at %s: targets come from measured RTT within each jurisdiction", path)
            return
        dr, issues = load_dr_config(path, self.daemon.config.region_map)
        if dr is None:
            # check-config rejects such a file; keep the old one if it went bad under a running daemon.
            for issue in issues:
                self.log.error("DR config: %s", issue)
            return
        self.dr = dr

    # ------------------------------------------------------------ startup: audit log and bus

    async def start(self) -> None:
        d = self.daemon
        self.load_dr()
        signer = Signer(load_private_key(d.config.daemon.identity.private_key))
        audit = AuditLog(Path(d.state_dir) / "failover" / "audit.log", self.region, signer)
        try:
            check = await anyio.to_thread.run_sync(audit.open, self.trust)
        except OSError as exc:
            self.log.error("cannot open the audit log %s (%s): this daemon will not vote", audit.path, exc)
            await d.bus.subscribe(BUS_KIND, self._on_message)
            return
        self.audit = audit
        if check.problem is not None:
            self.log.error("audit log did not verify (%s); moved aside, a new chain starts. This daemon will not "
                           "vote in any term already open when it reads the bucket", check.problem)
            self._floor_after_sync = True
        for entry in await anyio.to_thread.run_sync(lambda: list(audit.entries())):
            if entry.kind == "vote":
                try:
                    vote = parse_vote_body(self.region, entry.data)
                except InvalidRecord:
                    continue
                self.my_votes[(vote.region, vote.term)] = vote
            elif entry.kind == "decision":
                self.learner.logged_decisions.add((entry.data.get("region"), entry.data.get("term")))
        await d.bus.subscribe(BUS_KIND, self._on_message)
        self.log.info("failover ready: %d regions, quorum %d, votes renewed every %gs, lease %gs, "
                      "%d earlier vote(s) in the audit log", self.configured, self.quorum, self.rebroadcast,
                      self.lease, len(self.my_votes))

    async def _on_message(self, envelope: Any, message: Any) -> None:
        body = envelope.body
        if envelope.type == "vote":
            try:
                vote = parse_vote_body(envelope.sender, body, Proof.from_message(message.data, message.headers))
            except InvalidRecord as exc:
                self.m_invalid.labels("vote").inc()
                self.log.debug("dropped a vote from %s: %s", envelope.sender, exc)
                return
            await self.on_vote(vote)
        elif envelope.type == "committed":
            region = body.get("region")
            if isinstance(region, str) and region in self.ledgers:
                self.daemon.spawn(self.learner.sync_region, region, name="failover-sync")
        elif envelope.type == REQUEST:
            await self.operator.heard(body if isinstance(body, dict) else {}, envelope.sender)
        else:
            self.m_invalid.labels("message").inc()

    # ------------------------------------------------------------ inputs

    def member_changed(self, member: Member, previous: Member | None) -> None:
        if member.region == self.region:
            isolated = member.state == MemberState.ISOLATED
            if isolated != self.member_isolated:
                self.member_isolated = isolated
                if not isolated:
                    self.connected_since = time.monotonic()
                self.states.set("isolated", str(self.isolated),
                                "membership says this daemon is %s: %s", member.state.value,
                                "not voting" if self.isolated else "voting again")
            return
        if member.region not in self.ledgers:
            return
        if previous is None or previous.state != member.state or member.region not in self.since:
            self.since[member.region] = time.monotonic()
        self.view[member.region] = member
        if self.synced:
            self.daemon.spawn(self.evaluate, member.region, name="failover-evaluate")

    def bus_state(self, connected: bool) -> None:
        self.bus_down = not connected
        if connected:
            self.connected_since = time.monotonic()
            self.daemon.spawn(self.learner.sync_all, name="failover-sync")
        self.states.set("isolated", str(self.isolated), "bus %s: %s", "back" if connected else "lost",
                        "voting again" if not self.isolated else "not voting while isolated")

    async def on_vote(self, vote: Vote) -> None:
        ledger = self.ledgers.get(vote.region)
        if ledger is None or vote.voter not in self.ledgers:
            self.m_invalid.labels("vote").inc()
            return
        if ledger.next_term < vote.term <= ledger.next_term + MAX_AHEAD:
            # Someone knows of a filled slot we have not read yet.
            self.daemon.spawn(self.learner.sync_region, vote.region, name="failover-sync")
        if ledger.add_vote(vote, time.monotonic()) and vote.term == ledger.next_term:
            self.log.debug("vote %s from %s on %s/%d %s", "yes" if vote.yes else "no", vote.voter,
                           vote.region, vote.term, vote.action)
        self.committer.check_quorum(vote.region)

    # ------------------------------------------------------------ voting

    def sees_quorum(self) -> bool:
        alive = 1 + sum(1 for r, m in self.view.items() if r != self.region and m.state == MemberState.ALIVE)
        return alive >= self.quorum

    def alive_for(self, region: str) -> float:
        if region == self.region:
            return time.monotonic() - self.connected_since
        m = self.view.get(region)
        if m is None or m.state != MemberState.ALIVE or m.health == "down":
            return -1.0
        # What this daemon saw before it was last cut off (or frozen) does not count towards a hold-down.
        return time.monotonic() - max(self.since.get(region, time.monotonic()), self.connected_since)

    def want(self, region: str, action: str) -> tuple[bool, str, tuple[tuple[str, str], ...]]:
        """Would this daemon vote yes on ``action`` for ``region`` now? (yes, reason, operators' requests).

        Operators' requests are weighed by :meth:`.operator.OperatorRequests.basis`; without a basis
        there, only this daemon's own evidence counts.
        """
        ledger = self.ledgers[region]
        basis = self.operator.basis(region, action)
        if basis is not None:
            return True, basis.reason, basis.requests
        if not self.sees_quorum() and region != self.region:
            return False, "", ()
        if action == "failover":
            member = self.view.get(region)
            if region == self.region or member is None or member.state != MemberState.DEAD:
                return False, "", ()
            if time.monotonic() - self.connected_since < self.cfg.rejoin_grace:
                return False, "", ()
            return True, f"{region} is dead in {self.region}'s membership view", ()
        current = ledger.current()
        if self.cfg.failback != "auto" or current is None or current.manual or current.flapping:
            return False, "", ()
        alive = self.alive_for(region)
        if alive < self.cfg.hold_down:
            return False, "", ()
        return True, f"{region} alive for {alive:.0f}s (hold-down {self.cfg.hold_down:g}s)", ()

    @property
    def decisions_known(self) -> bool:
        """True once the decisions in the bucket at start are read and applied (routing may answer)."""
        return self.applier.replay_done.is_set()

    def backoff(self, region: str) -> float:
        """Seconds to wait before voting again on ``region`` after terms in a row were abandoned.

        None after the first abandoned term (the next one opens at once), then ``vote_timeout``
        doubling up to :data:`MAX_BACKOFF`, so a standing disagreement (vetoes, split views) costs a
        slot now and then rather than a slot per tick. No jitter: the wait is derived from the
        ledger on every tick, and every daemon should reopen the region at the same time.
        """
        streak = self.ledgers[region].abandoned_in_a_row()
        if streak < 2:
            return 0.0
        wait = exponential(streak - 1, self.cfg.vote_timeout, MAX_BACKOFF, jitter=0)
        return max(0.0, self.learner.last_abandon.get(region, 0.0) + wait - time.monotonic())

    def can_vote(self, region: str, term: int) -> bool:
        return (self.cfg.enabled and self.synced and not self.isolated and self.kv is not None
                and self.audit is not None and (region, term) not in self.my_votes
                and term > self.vote_floor.get(region, 0))

    async def evaluate(self, region: str) -> None:
        """Vote on ``region``'s open slot if this daemon has reason to and has not yet."""
        if region in self._evaluating:
            return
        self._evaluating.add(region)
        try:
            ledger = self.ledgers[region]
            term, action = ledger.next_term, ledger.next_action()
            if not self.can_vote(region, term) or self.backoff(region) > 0:
                self.m_considered.labels(region, "not_now").inc()
                return
            yes, reason, requests = self.want(region, action)
            if not yes:
                waiting = bool(self.operator.current(region, action))
                self.m_considered.labels(region, "awaiting_operators" if waiting else "no_reason").inc()
                return
            self.m_considered.labels(region, "vote").inc()
            proposal = Proposal(region, term, action, self.committer.choose(region, action, set())[0],
                                self._proposer(ledger, term), reason)
            vetoes = await self.daemon.hooks.failover_vote(self.daemon, proposal)
            if vetoes:
                reason = "; ".join(v.reason for v in vetoes)
            await self.cast(region, term, action, not vetoes, reason, requests)
        finally:
            self._evaluating.discard(region)
        self.committer.check_quorum(region)

    def _proposer(self, ledger: RegionLedger, term: int) -> str:
        tally = ledger.tallies.get(term) or {}
        first = min(tally.values(), key=lambda v: v.cast_at, default=None)
        return first.voter if first is not None else self.region

    async def cast(self, region: str, term: int, action: str, yes: bool, reason: str,
                   requests: tuple[tuple[str, str], ...] = ()) -> None:
        """Persist, then send, this daemon's one vote on (region, term); ``requests``: operators' it answers."""
        ledger = self.ledgers[region]
        async with self._vote_lock:
            if not self.can_vote(region, term) or term != ledger.next_term or ledger.next_action() != action:
                return
            vote = Vote(self.region, region, term, action, yes, reason, bool(requests), round(time.time(), 6),
                        requests=requests)
            if not await self.audit_append("vote", vote.body()):
                return  # a vote that is not on disk is never sent
            self.my_votes[(region, term)] = vote
        self.m_votes.labels(action, "yes" if yes else "no").inc()
        self.log.info("voted %s on %s of %s in term %d: %s", "yes" if yes else "no", action, region, term, reason)
        await self._send(vote)

    async def audit_append(self, kind: str, data: dict[str, Any]) -> bool:
        """Append to the audit log (fsynced, off the event loop); False, logged, if that failed."""
        if self.audit is None:
            return False
        try:
            await anyio.to_thread.run_sync(self.audit.append, kind, data)
        except OSError as exc:
            self.states.set("audit", "failed", "cannot write the audit log %s (%s): not voting until it can",
                            self.audit.path, exc, level=logging.ERROR)
            return False
        self.states.set("audit", "ok", "audit log %s writable again", self.audit.path)
        return True

    async def _send(self, vote: Vote) -> None:
        data, headers = self.daemon.bus.seal("vote", vote.body())
        try:
            await self.daemon.transport.publish(self.daemon.bus.subject(BUS_KIND), data, headers)
        except Exception as exc:
            self.log.debug("vote not sent now (%s); it is sent again while the term is open", exc)
            return
        # Our own vote counts too, renewed with the copy just sent.
        signed = replace(vote, proof=Proof.from_message(data, headers))
        self.ledgers[vote.region].add_vote(signed, time.monotonic())

    # ------------------------------------------------------------ the periodic loop

    async def tick(self) -> None:
        now = time.monotonic()
        if not self.synced:
            if not await self.learner.sync_all():
                return
            self.synced = True
            await self.applier.replayed()
            self._last_poll = now
            if self._floor_after_sync:
                self.vote_floor = {r: ledger.next_term for r, ledger in self.ledgers.items()}
                self._floor_after_sync = False
            self.log.info("read the KV bucket: %d decision(s) in force",
                          sum(1 for ledger in self.ledgers.values() if ledger.failed_over))
        elif now - self._last_poll >= self.cfg.poll_interval and not self.isolated:
            self._last_poll = now
            await self.learner.poll()
        for region, ledger in self.ledgers.items():
            await self.evaluate(region)
            self.committer.maybe_abandon(ledger, now)
            self.committer.check_quorum(region)
        if now - self._last_rebroadcast >= self.rebroadcast and not self.isolated:
            self._last_rebroadcast = now
            await self._rebroadcast()

    async def _rebroadcast(self) -> None:
        """Renew this daemon's votes in open terms, the yes ones only while their reason still holds."""
        fresh_after = time.time() - self.cfg.vote_timeout
        for (region, term), vote in list(self.my_votes.items()):
            if term != self.ledgers[region].next_term or vote.cast_at < fresh_after:
                continue
            if vote.yes and not self.want(region, vote.action)[0]:
                continue  # no longer sees what it voted on: the vote lapses
            await self._send(vote)

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """The periodic loop; ready once every region's decisions are read from the bucket and applied.

        Until then a restarted daemon does not know which regions are failed over, so it must not
        report ready (routing answers 503 until :attr:`decisions_known`). The applier is a service of
        its own, started with this one, so the wait ends.
        """
        reported = False
        while True:
            await self.tick()
            if self.synced and not reported:
                await self.applier.replay_done.wait()
                reported = True
                task_status.started()
            before = time.monotonic()
            await anyio.sleep(self.cfg.tick)
            slept = time.monotonic() - before
            if slept > 4 * self.cfg.tick + 1.0:
                # The process was frozen (SIGSTOP, a stalled VM): the membership view is stale until
                # membership catches up, so this counts as a rejoin.
                self.connected_since = time.monotonic()
                self.log.warning("event loop was frozen for %.1fs: no failover vote for %gs", slept,
                                 self.cfg.rejoin_grace)

    # ------------------------------------------------------------ operators

    def request_problem(self, region: str, action: str, reason: Any,
                        force: bool = False) -> tuple[str, dict[str, Any]] | None:
        return self.operator.problem(region, action, reason, force)

    async def request(self, region: str, action: str, reason: str, force: bool = False) -> dict[str, Any]:
        return await self.operator.submit(region, action, reason, force)
