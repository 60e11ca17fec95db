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
  and renewed by their voter every :data:`REBROADCAST` seconds while it is
  connected and still has its reason; a vote not renewed within
  :data:`LEASE` lapses. Every daemon counts them, and any daemon that sees
  a quorum of live yes votes creates the slot's key in the KV bucket with
  the decision and the votes that prove it. The create is the fencing point: exactly one create
  per slot succeeds, every other daemon reads and applies that one.
* A slot that does not reach quorum within ``vote_timeout`` (or cannot,
  because of no votes) is filled with an "abandoned" record, so the next
  term opens and a late quorum for the old term has nowhere to commit.
* Every daemon applies every committed decision in term order, including
  daemons that start later (they read the bucket at start and poll it).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from meshd.decisions import Proposal
from meshd.i18n import Translator
from meshd.identity import Signer, TrustStore, load_private_key
from meshd.members import Member, MemberState
from meshd.transport import KeyExists, KeyValueStore

from .applier import Applier
from .audit import AuditLog
from .config import FailoverConfig, dr_config_path, strict_majority
from .drconfig import EMPTY, DRConfig, choose_target, load_dr_config
from .ledger import MAX_AHEAD, RegionLedger
from .records import (
    InvalidRecord,
    Proof,
    Record,
    Vote,
    decode_record,
    encode_record,
    parse_slot_key,
    parse_vote_body,
    record_body,
    slot_key,
)
from .statelog import StateLog

if TYPE_CHECKING:
    from meshd.daemon import Daemon

BUS_KIND = "failover"
KV_READ_TIMEOUT = 1.0
KV_WRITE_TIMEOUT = 2.0
"""Short: a read that hangs (a bucket just created by another region, a leader election after a node
restart) is cheaper to retry on the next tick than to wait out nats-py's 5 s."""
MAX_BACKOFF = 300.0
REBROADCAST = 0.5
LEASE = 1.5
"""A vote counts while its voter renews it: it resends it every REBROADCAST seconds for as long as it is
connected and still has its reason. A quorum of votes renewed within LEASE is a quorum now, not one
gathered before a partition."""
REQUEST_TTL_MIN = 30.0


@dataclass
class Request:
    """An operator's request for a failover or failback, pending until decided or expired."""

    action: str
    by: str
    expires: float


class FailoverEngine:
    """Per-daemon failover state and the tasks that drive it."""

    def __init__(self, daemon: Daemon):
        self.daemon = daemon
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
        self.kv: KeyValueStore | None = None
        self.kv_replicas: int | None = None
        self.kv_ok = False
        self.synced = False
        self.my_votes: dict[tuple[str, int], Vote] = {}
        self.vote_floor: dict[str, int] = {}
        self._floor_after_sync = False
        self.logged_decisions: set[tuple[str, int]] = set()
        self.requests: dict[str, Request] = {}
        self.last_abandon: dict[str, float] = {}
        self._vote_lock = anyio.Lock()
        self._sync_locks: dict[str, anyio.Lock] = {r: anyio.Lock() for r in self.ledgers}
        self._evaluating: set[str] = set()
        self._inflight: set[tuple[str, int]] = set()
        self._last_rebroadcast = 0.0
        self._last_poll = 0.0
        self.dr: DRConfig = EMPTY
        self.audit: AuditLog | None = None
        self.applier = Applier(daemon, self.ledgers, self.translator)
        m = daemon.metrics
        self.m_votes = m.counter("failover_votes_cast_total", "Votes this daemon cast, by action and vote",
                                 ["action", "vote"])
        self.m_commits = m.counter("failover_commit_attempts_total",
                                   "KV creates this daemon attempted for a slot, by result", ["result"])
        self.m_invalid = m.counter("failover_invalid_total", "Votes, requests and records rejected, by kind",
                                   ["kind"])
        self.m_kv = m.gauge("failover_kv_up", "1 while the failover KV bucket answers")

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
                self.logged_decisions.add((entry.data.get("region"), entry.data.get("term")))
        await d.bus.subscribe(BUS_KIND, self._on_message)
        self.log.info("failover ready: %d regions, quorum %d, %d earlier vote(s) in the audit log",
                      self.configured, self.quorum, len(self.my_votes))

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
                self.daemon.spawn(self.sync_region, region, name="failover-sync")
        elif envelope.type == "request":
            await self.on_request(body.get("region"), body.get("action"), envelope.sender)
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
            self.daemon.spawn(self.sync_all, name="failover-sync")
        self.states.set("isolated", str(self.isolated), "bus %s: %s", "back" if connected else "lost",
                        "voting again" if not self.isolated else "not voting while isolated")

    async def on_vote(self, vote: Vote) -> None:
        ledger = self.ledgers.get(vote.region)
        if ledger is None or vote.voter not in self.ledgers:
            self.m_invalid.labels("vote").inc()
            return
        if ledger.next_term < vote.term <= ledger.next_term + MAX_AHEAD:
            # Someone knows of a filled slot we have not read yet.
            self.daemon.spawn(self.sync_region, vote.region, name="failover-sync")
        if ledger.add_vote(vote, time.monotonic()) and vote.term == ledger.next_term:
            self.log.debug("vote %s from %s on %s/%d %s", "yes" if vote.yes else "no", vote.voter,
                           vote.region, vote.term, vote.action)
        self.check_quorum(vote.region)

    async def on_request(self, region: Any, action: Any, by: str) -> None:
        if not isinstance(region, str) or region not in self.ledgers or action not in ("failover", "failback"):
            self.m_invalid.labels("request").inc()
            return
        ttl = max(REQUEST_TTL_MIN, 3 * self.cfg.vote_timeout)
        self.requests[region] = Request(action, by, time.monotonic() + ttl)
        await self._audit("request", {"region": region, "action": action, "by": by})
        self.log.info("operator request from %s: %s of %s", by, action, region)
        await self.evaluate(region)

    # ------------------------------------------------------------ the KV bucket

    def _auto_replicas(self) -> int:
        setting = self.cfg.kv.replicas
        if setting != "auto":
            return int(setting)
        # nats-py keeps the server's INFO, which names the cluster of a clustered server. On a cluster
        # R3 it is: one too small for it fails loudly (and is retried) rather than quietly getting R1.
        info = getattr(getattr(self.daemon.transport, "nc", None), "_server_info", None) or {}
        return 3 if info.get("cluster") else 1

    async def ensure_kv(self) -> bool:
        if self.kv is not None:
            return True
        if self.isolated:
            return False
        replicas = self._auto_replicas()
        try:
            with anyio.fail_after(KV_WRITE_TIMEOUT):
                self.kv = await self.daemon.transport.key_value(self.cfg.kv.bucket, replicas=replicas)
        except Exception as exc:
            self._kv_failed("open", exc)
            return False
        self.kv_replicas = replicas
        self._kv_ok()
        return True

    def _kv_ok(self) -> None:
        self.kv_ok = True
        self.m_kv.set(1)
        self.states.set("kv", "ok", "KV bucket %s available", self.cfg.kv.bucket)

    def _kv_failed(self, op: str, exc: BaseException) -> None:
        self.kv_ok = False
        self.m_kv.set(0)
        self.states.set("kv", "down", "KV bucket %s unavailable (%s: %s: %s): no decision can be committed "
                        "until it answers", self.cfg.kv.bucket, op, type(exc).__name__, exc, level=logging.WARNING)

    async def _kv_get(self, key: str) -> bytes | None:
        assert self.kv is not None
        with anyio.fail_after(KV_READ_TIMEOUT):
            entry = await self.kv.get(key)
        return None if entry is None else entry.value

    # ------------------------------------------------------------ reading filled slots

    async def sync_all(self) -> None:
        for region in list(self.ledgers):
            await self.sync_region(region)

    async def sync_region(self, region: str) -> None:
        """Read every slot of ``region`` after the last one known, in order, and apply what they hold."""
        if not await self.ensure_kv():
            return
        ledger = self.ledgers[region]
        async with self._sync_locks[region]:
            while True:
                key = slot_key(region, ledger.next_term)
                try:
                    value = await self._kv_get(key)
                except Exception as exc:
                    self._kv_failed("get", exc)
                    return
                self._kv_ok()
                if value is None:
                    break
                await self._learn(ledger, value)
        await self.evaluate(region)

    async def _learn(self, ledger: RegionLedger, value: bytes) -> None:
        term = ledger.next_term
        jurisdictions = {r: reg.jurisdiction for r, reg in self.daemon.regions.items()}
        try:
            record: Record | None = decode_record(value, self.trust, self.daemon.federation, jurisdictions,
                                                  ledger.region, term)
        except InvalidRecord as exc:
            self.m_invalid.labels("record").inc()
            self.log.error("slot %s/%d holds an invalid record, ignored (the term is used up): %s",
                           ledger.region, term, exc)
            record = None
        ledger.fill(term, record)
        request = self.requests.get(ledger.region)
        if record is not None and record.committed and request is not None and request.action == record.action:
            del self.requests[ledger.region]
        if (ledger.region, term) not in self.logged_decisions:
            data: dict[str, Any] = {"region": ledger.region, "term": term, "outcome": "invalid", "digest": ""}
            if record is not None:
                data = {"region": record.region, "term": term, "outcome": record.outcome, "action": record.action,
                        "target": record.target, "voters": list(record.voters), "committed_by": record.committed_by,
                        "committed_at": record.committed_at, "manual": record.manual, "flapping": record.flapping,
                        "digest": record.digest}
            if await self._audit("decision", data):
                self.logged_decisions.add((ledger.region, term))
        if record is None:
            return
        if record.committed:
            self.log.info("decision %s/%d: %s of %s -> %s (voters %s, committed by %s)", record.region, term,
                          record.action, record.region, record.target or "no target", ",".join(record.voters),
                          record.committed_by)
            # Decisions read at start are replays: routing must learn them, but their alerts were
            # raised when they were made.
            await self.applier.queue(record, replay=not self.synced)
        else:
            self.last_abandon[ledger.region] = time.monotonic()
            self.log.info("term %s/%d abandoned by %s: %s", record.region, term, record.committed_by, record.reason)

    # ------------------------------------------------------------ voting

    def sees_quorum(self) -> bool:
        alive = 1 + sum(1 for r, m in self.view.items() if r != self.region and m.state == MemberState.ALIVE)
        return alive >= self.quorum

    def _alive_for(self, region: str) -> float:
        if region == self.region:
            return time.monotonic() - self.connected_since
        m = self.view.get(region)
        if m is None or m.state != MemberState.ALIVE or m.health == "down":
            return -1.0
        # What this daemon saw before it was last cut off (or frozen) does not count towards a hold-down.
        return time.monotonic() - max(self.since.get(region, time.monotonic()), self.connected_since)

    def want(self, region: str, action: str) -> tuple[bool, str, bool]:
        """Would this daemon vote yes on ``action`` for ``region`` now? (yes, reason, manual)."""
        ledger = self.ledgers[region]
        request = self.requests.get(region)
        if request is not None and request.expires < time.monotonic():
            del self.requests[region]
            request = None
        if request is not None and request.action == action:
            if action == "failback" and self._alive_for(region) < 0:
                return False, "", False
            return True, f"operator request via {request.by}", True
        if not self.sees_quorum() and region != self.region:
            return False, "", False
        if action == "failover":
            member = self.view.get(region)
            if region == self.region or member is None or member.state != MemberState.DEAD:
                return False, "", False
            if time.monotonic() - self.connected_since < self.cfg.rejoin_grace:
                return False, "", False
            return True, f"{region} is dead in {self.region}'s membership view", False
        current = ledger.current()
        if self.cfg.failback != "auto" or current is None or current.manual or current.flapping:
            return False, "", False
        alive = self._alive_for(region)
        if alive < self.cfg.hold_down:
            return False, "", False
        return True, f"{region} alive for {alive:.0f}s (hold-down {self.cfg.hold_down:g}s)", False

    def backoff(self, region: str) -> float:
        """Seconds to wait before voting again on ``region`` after terms in a row were abandoned.

        None after the first abandoned term (the next one opens at once), then ``vote_timeout``
        doubling up to :data:`MAX_BACKOFF`, so a standing disagreement (vetoes, split views) costs a
        slot now and then rather than a slot per tick.
        """
        streak = self.ledgers[region].abandoned_in_a_row()
        if streak < 2:
            return 0.0
        wait = min(MAX_BACKOFF, self.cfg.vote_timeout * 2 ** (streak - 2))
        return max(0.0, self.last_abandon.get(region, 0.0) + wait - time.monotonic())

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
                return
            yes, reason, manual = self.want(region, action)
            if not yes:
                return
            proposal = Proposal(region, term, action, self.expected_target(region, action),
                                self._proposer(ledger, term), reason)
            vetoes = await self.daemon.hooks.failover_vote(self.daemon, proposal)
            if vetoes:
                reason = "; ".join(v.reason for v in vetoes)
            await self.cast(region, term, action, not vetoes, reason, manual)
        finally:
            self._evaluating.discard(region)
        self.check_quorum(region)

    def _proposer(self, ledger: RegionLedger, term: int) -> str:
        tally = ledger.tallies.get(term) or {}
        first = min(tally.values(), key=lambda v: v.cast_at, default=None)
        return first.voter if first is not None else self.region

    async def cast(self, region: str, term: int, action: str, yes: bool, reason: str, manual: bool) -> None:
        """Persist, then send, this daemon's one vote on (region, term)."""
        ledger = self.ledgers[region]
        async with self._vote_lock:
            if not self.can_vote(region, term) or term != ledger.next_term or ledger.next_action() != action:
                return
            vote = Vote(self.region, region, term, action, yes, reason, manual, round(time.time(), 6))
            if not await self._audit("vote", vote.body()):
                return  # a vote that is not on disk is never sent
            self.my_votes[(region, term)] = vote
        self.m_votes.labels(action, "yes" if yes else "no").inc()
        self.log.info("voted %s on %s of %s in term %d: %s", "yes" if yes else "no", action, region, term, reason)
        await self._send(vote)

    async def _audit(self, kind: str, data: dict[str, Any]) -> bool:
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
        signed = Vote(vote.voter, vote.region, vote.term, vote.action, vote.yes, vote.reason, vote.manual,
                      vote.cast_at, Proof.from_message(data, headers))
        self.ledgers[vote.region].add_vote(signed, time.monotonic())

    # ------------------------------------------------------------ committing

    def check_quorum(self, region: str) -> None:
        ledger = self.ledgers[region]
        term, action = ledger.next_term, ledger.next_action()
        if (region, term) in self._inflight or self.isolated or self.kv is None or not self.synced:
            return
        votes = self.live_votes(ledger, term, action)
        if len(votes) >= self.quorum:
            self._inflight.add((region, term))
            self.daemon.spawn(self.commit, region, term, action, name="failover-commit")

    def live_votes(self, ledger: RegionLedger, term: int, action: str) -> list[Vote]:
        """Yes votes cast within ``vote_timeout`` and renewed by their voters within :data:`LEASE`."""
        return ledger.yes_votes(term, action, time.time() - self.cfg.vote_timeout, time.monotonic() - LEASE)

    def expected_target(self, region: str, action: str, voters: set[str] | None = None) -> str | None:
        return self.choose(region, action, voters or set())[0]

    def choose(self, region: str, action: str, voters: set[str]) -> tuple[str | None, str, str]:
        if action == "failback":
            return region, "home", f"{region} takes its own traffic back"

        def eligible(name: str) -> bool:
            if self.ledgers[name].failed_over:
                return False
            if name == self.region or name in voters:
                return True
            member = self.view.get(name)
            return member is not None and member.state == MemberState.ALIVE and member.health != "down"

        rtt = {name: m.rtt_ms for name, m in self.view.items()}
        choice = choose_target(region, self.daemon.config.region_map, self.dr, eligible, rtt)
        return choice.target, choice.tier, choice.reason

    async def commit(self, region: str, term: int, action: str) -> None:
        ledger = self.ledgers[region]
        try:
            votes = [v for v in self.live_votes(ledger, term, action) if v.proof is not None]
            if term != ledger.next_term or len(votes) < self.quorum:
                return
            voters = {v.voter for v in votes}
            target, tier, reason = self.choose(region, action, voters)
            now = time.time()
            previous_failback = ledger.previous("failback")
            flapping = (action == "failover" and previous_failback is not None
                        and now - previous_failback.committed_at < self.cfg.flap_window)
            record = Record("committed", region, term, action, target, self.region, round(now, 6),
                            reason=reason, tier=tier, manual=any(v.manual for v in votes), flapping=flapping,
                            quorum=self.quorum)
            await self._create(ledger, record, votes)
        finally:
            self._inflight.discard((region, term))

    async def abandon(self, region: str, term: int, action: str, reason: str) -> None:
        ledger = self.ledgers[region]
        try:
            if term != ledger.next_term:
                return
            record = Record("abandoned", region, term, action, None, self.region, round(time.time(), 6),
                            reason=reason)
            await self._create(ledger, record, [])
        finally:
            self._inflight.discard((region, term))

    async def _create(self, ledger: RegionLedger, record: Record, votes: list[Vote]) -> None:
        if self.kv is None or self.isolated:
            return
        data, headers = self.daemon.bus.seal("decision", record_body(record, votes, self.configured))
        key = slot_key(record.region, record.term)
        try:
            with anyio.fail_after(KV_WRITE_TIMEOUT):
                await self.kv.create(key, encode_record(data, headers))
        except KeyExists:
            self.m_commits.labels("exists").inc()
        except Exception as exc:
            # The create may have landed before the error: reading the slot tells.
            self.m_commits.labels("error").inc()
            self._kv_failed("create", exc)
        else:
            self.m_commits.labels("created").inc()
            self._kv_ok()
            self.log.info("%s %s/%d (%s)", "committed" if record.committed else "abandoned",
                          record.region, record.term, record.action)
            await self.daemon.bus.publish(BUS_KIND, "committed", {"region": record.region, "term": record.term})
        await self.sync_region(record.region)

    # ------------------------------------------------------------ the periodic loop

    async def tick(self) -> None:
        now = time.monotonic()
        if not self.synced:
            if not await self.ensure_kv():
                return
            await self.sync_all()
            if not self.kv_ok:
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
            await self.sync_all()
        for region, ledger in self.ledgers.items():
            await self.evaluate(region)
            self._maybe_abandon(ledger, now)
            self.check_quorum(region)
        if now - self._last_rebroadcast >= REBROADCAST and not self.isolated:
            self._last_rebroadcast = now
            await self._rebroadcast()

    def _maybe_abandon(self, ledger: RegionLedger, now: float) -> None:
        term, action = ledger.next_term, ledger.next_action()
        opened = ledger.opened.get(term)
        if opened is None or (ledger.region, term) in self._inflight or self.isolated or self.kv is None:
            return
        yes = len(self.live_votes(ledger, term, action))
        no = len(ledger.no_votes(term, action))
        if no > self.configured - self.quorum:
            reason = f"{no} of {self.configured} regions voted no: quorum {self.quorum} is out of reach"
        elif now - opened > self.cfg.vote_timeout:
            reason = f"no quorum within {self.cfg.vote_timeout:g}s ({yes} fresh yes, {no} no; quorum {self.quorum})"
        else:
            return
        self._inflight.add((ledger.region, term))
        self.daemon.spawn(self.abandon, ledger.region, term, action, reason, name="failover-abandon")

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
        task_status.started()
        while True:
            await self.tick()
            before = time.monotonic()
            await anyio.sleep(self.cfg.tick)
            slept = time.monotonic() - before
            if slept > 4 * self.cfg.tick + 1.0:
                # The process was frozen (SIGSTOP, a stalled VM): the membership view is stale until
                # membership catches up, so this counts as a rejoin.
                self.connected_since = time.monotonic()
                self.log.warning("event loop was frozen for %.1fs: no failover vote for %gs", slept,
                                 self.cfg.rejoin_grace)

    # ------------------------------------------------------------ operators and status

    def request_problem(self, region: str, action: str) -> tuple[str, dict[str, Any]] | None:
        """Why an operator's request cannot go to a vote now: (error code, params), or None."""
        if region not in self.ledgers:
            return "unknown_region", {"region": region, "known": ", ".join(sorted(self.ledgers))}
        if not self.cfg.enabled:
            return "disabled", {}
        if self.isolated:
            return "isolated", {}
        if self.kv is None or not self.synced:
            return "kv_unavailable", {"bucket": self.cfg.kv.bucket}
        ledger = self.ledgers[region]
        if action == "failover" and ledger.failed_over:
            return "already_failed_over", {"region": region}
        if action == "failback" and not ledger.failed_over:
            return "not_failed_over", {"region": region}
        if action == "failback" and self._alive_for(region) < 0:
            return "not_alive", {"region": region}
        return None

    async def request(self, region: str, action: str) -> dict[str, Any]:
        """Start an operator's request: every daemon hears it and votes on it."""
        ledger = self.ledgers[region]
        term = ledger.next_term
        await self.daemon.bus.publish(BUS_KIND, "request", {"region": region, "action": action})
        await self.on_request(region, action, self.region)
        return {"region": region, "action": action, "term": term, "quorum": self.quorum}

def keys_in(keys: list[str]) -> dict[str, list[int]]:
    """Slot keys of a bucket listing, grouped by region (for tools and tests)."""
    out: dict[str, list[int]] = {}
    for key in keys:
        parsed = parse_slot_key(key)
        if parsed is not None:
            out.setdefault(parsed[0], []).append(parsed[1])
    return {r: sorted(ts) for r, ts in out.items()}

