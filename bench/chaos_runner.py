"""The chaos runner: a seeded schedule of faults against a real local federation, then the invariants.

A run starts :class:`meshd.testing.LocalFederation` (seven ``meshd run``
processes, a 3-node NATS cluster with an R3 decision bucket, a TCP proxy in
front of every daemon), applies the faults of :func:`make_schedule` one step
after another (SIGKILL, SIGSTOP/SIGCONT, cutting sets of daemons off the
bus, NATS node restarts, sometimes two at once), records when each fault
began and ended, and then checks, from the audit logs and the KV bucket:

* safety: at most one decision per (region, term), every daemon applied the
  same one; each carries a quorum of valid signed votes; no daemon voted
  twice in a term; none was committed while fewer than a quorum of daemons
  were connected (the minority side of a partition), nor by a daemon that
  was cut off, paused or dead; no target outside the jurisdiction;
  every audit log verifies;
* liveness: a region killed while a quorum stays connected gets a committed
  failover within ``detect_budget``, applied by every survivor;
* routing: no route answered after a decision settled goes to a dead or
  failed-over region, or outside the tenant's residency.

A run has a network profile: ``lan`` (the proxies pass bytes on at once,
the daemons use the ``lan`` membership timing) or ``wan`` (every proxy holds
each chunk for 80-150 ms each way, the daemons use the ``wan`` timing, and
the budgets are those of a federation spread over continents).

``tests/chaos`` runs one short schedule; ``bench/chaos.py`` runs many and
reports the kill -> committed -> applied-everywhere latencies. It lives in
bench/, not in the failover package: it is a harness, and an installed
daemon never needs it.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from meshd.config import RegionMap, TrustBundle, load_model_file
from meshd.durations import parse_duration
from meshd.identity import TrustStore
from meshd.natsserver import free_port
from meshd.samples import sample_file
from meshd.testing import LocalFederation
from meshd_plugins.failover.audit import verify
from meshd_plugins.failover.config import LEASE_RENEWALS, strict_majority
from meshd_plugins.failover.records import InvalidRecord, Record, decode_record, parse_slot_key, slot_key
from meshd_plugins.membership.settings import PROFILES as MEMBERSHIP_PROFILES

SEVEN = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ca-central-1", "me-south-1", "ap-southeast-1"]
IN_FLIGHT = 0.5
"""Seconds past a vote's lease within which a partition is not blamed for a commit: a quorum of votes
renewed within the lease (messages in flight included) is what the protocol promises."""
LOCATIONS = ["DE", "FR", "US", "CA", "BH", "SG", "JP"]
STARTS = 3
BUCKET = "meshd_failover"


@dataclass(frozen=True)
class NetworkProfile:
    """The network a run simulates and the budgets that go with it."""

    name: str
    latency: tuple[float, float] | None
    """Seconds each daemon's TCP proxy holds every chunk, each way (low, high); None passes bytes on at once."""
    membership: str
    """The membership timing profile the daemons run with."""
    detect_budget: float
    """Seconds from a SIGKILL to the committed failover that liveness allows."""
    settle_timeout: float
    """Seconds to wait for every daemon to see every other alive again after a step."""


PROFILES = {
    "lan": NetworkProfile("lan", None, "lan", detect_budget=20.0, settle_timeout=60.0),
    # A daemon-to-daemon message crosses two proxies: 160-300 ms one way, like regions on two
    # continents; the wan membership timing detects a crash in roughly 10 to 20 s (docs/membership.md).
    "wan": NetworkProfile("wan", (0.08, 0.15), "wan", detect_budget=60.0, settle_timeout=180.0),
}


def parse_latency(text: str) -> tuple[float, float]:
    """``80-150ms`` -> (0.08, 0.15); ``100ms`` -> (0.1, 0.1); a unit on the upper bound applies to both."""
    low, dash, high = text.strip().partition("-")
    if not dash:
        high = low
    unit = re.sub(r"^[\d.\s]*", "", high)
    if not re.sub(r"^[\d.\s]*", "", low):
        low += unit
    try:
        bounds = parse_duration(low), parse_duration(high)
    except ValueError as exc:
        raise ValueError(f"latency {text!r}: {exc}; write e.g. 80-150ms") from None
    if bounds[0] > bounds[1]:
        raise ValueError(f"latency {text!r}: the lower bound is above the upper one")
    return bounds


# ---------------------------------------------------------------- the schedule


@dataclass(frozen=True)
class Fault:
    kind: str
    """``kill``, ``pause``, ``cut`` or ``nats_restart``."""
    regions: tuple[str, ...] = ()
    node: int | None = None
    hold: float = 0.0
    """Seconds the fault lasts (for a kill: at least; the runner waits for the decision)."""


@dataclass(frozen=True)
class Step:
    faults: tuple[Fault, ...]
    measure: bool = False
    """A kill from a clean start: its latency is a sample for the benchmark."""


def make_schedule(seed: int, regions: list[str], duration: float) -> list[Step]:
    """A reproducible list of steps whose fault holds add up to about ``duration`` seconds.

    The first step is always a clean SIGKILL (the latency sample); then a
    mix of kills, pauses, minority and majority cuts and NATS node restarts,
    a fifth of the steps with two faults at once.
    """
    rng = random.Random(seed)
    steps = [Step((Fault("kill", (rng.choice(regions),), hold=rng.uniform(0.5, 2.0)),), measure=True)]
    total = 8.0
    kinds = ["kill", "pause", "cut_minority", "cut_majority", "nats_restart"]
    weights = [3, 2, 3, 1, 2]
    while total < duration:
        count = 2 if rng.random() < 0.2 else 1
        faults: list[Fault] = []
        busy: set[str] = set()
        for _ in range(count):
            kind = rng.choices(kinds, weights)[0]
            free = [r for r in regions if r not in busy]
            if kind == "kill":
                fault = Fault("kill", (rng.choice(free),), hold=rng.uniform(0.5, 3.0))
            elif kind == "pause":
                fault = Fault("pause", (rng.choice(free),), hold=rng.uniform(1.0, 6.0))
            elif kind == "cut_minority":
                fault = Fault("cut", tuple(rng.sample(free, rng.randint(1, min(3, len(free))))),
                              hold=rng.uniform(2.0, 8.0))
            elif kind == "cut_majority":
                size = len(regions) - strict_majority(len(regions)) + 1
                if len(free) < size:
                    continue
                fault = Fault("cut", tuple(rng.sample(free, size)), hold=rng.uniform(3.0, 8.0))
            else:
                if any(f.kind == "nats_restart" for f in faults):
                    continue
                fault = Fault("nats_restart", node=rng.randrange(3), hold=rng.uniform(0.5, 3.0))
            busy.update(fault.regions)
            faults.append(fault)
        if faults:
            steps.append(Step(tuple(faults)))
            total += max(f.hold for f in faults) + 4.0
    return steps


# ---------------------------------------------------------------- recording


@dataclass
class Event:
    t: float
    what: str
    """``down`` or ``up`` for a region, ``node_down`` / ``node_up`` for a NATS node."""
    region: str | None = None
    node: int | None = None
    cause: str = ""


@dataclass
class RouteProbe:
    t: float
    responder: str
    tenant: str
    location: str
    status: int
    answer: Any


@dataclass
class Sample:
    """One measured SIGKILL: seconds to the commit and to the last survivor applying it."""

    region: str
    killed_at: float
    committed: float | None = None
    applied_everywhere: float | None = None


@dataclass
class Report:
    seed: int
    steps: list[Step]
    events: list[Event] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    probes: int = 0
    votes: int = 0
    liveness_checked: int = 0
    seconds: float = 0.0
    workdir: str = ""
    profile: str = "lan"
    latency: tuple[float, float] | None = None

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> dict[str, Any]:
        committed = [r for r in self.records if r["outcome"] == "committed"]
        return {
            "seed": self.seed, "ok": self.ok, "seconds": round(self.seconds, 1), "profile": self.profile,
            "latency_ms": [round(x * 1000) for x in self.latency] if self.latency else None,
            "steps": [[f"{f.kind}:{','.join(f.regions) or f.node}:{f.hold:.1f}s" for f in s.faults]
                      for s in self.steps],
            "decisions": len(committed), "abandoned": len(self.records) - len(committed), "votes": self.votes,
            "liveness_checked": self.liveness_checked, "route_probes": self.probes,
            "samples": [asdict(s) for s in self.samples], "violations": self.violations, "notes": self.notes,
            "workdir": self.workdir,
        }


# ---------------------------------------------------------------- the runner


class ChaosRun:
    """One seeded schedule against one fresh federation."""

    def __init__(self, workdir: Path, seed: int, *, duration: float = 40.0, detect_budget: float | None = None,
                 regions: list[str] | None = None, hold_down: float = 5.0, profile: str = "lan",
                 latency: tuple[float, float] | None = None,
                 log: Callable[[str], None] = lambda _m: None):
        self.workdir = Path(workdir)
        self.seed = seed
        self.regions = list(regions or SEVEN)
        self.quorum = strict_majority(len(self.regions))
        if profile not in PROFILES:
            raise ValueError(f"network profile {profile!r}: known profiles are {', '.join(PROFILES)}")
        self.profile = PROFILES[profile]
        self.latency = latency if latency is not None else self.profile.latency
        self.detect_budget = detect_budget if detect_budget is not None else self.profile.detect_budget
        self.hold_down = hold_down
        # The daemons derive their vote lease from the membership profile (failover.config.vote_timing).
        self.lease = LEASE_RENEWALS * MEMBERSHIP_PROFILES[self.profile.membership].probe_interval
        # A vote's lease runs from its arrival, up to two proxy crossings after its voter renewed it.
        self.slack = self.lease + IN_FLIGHT + (2 * self.latency[1] if self.latency else 0.0)
        self.log = log
        self.steps = make_schedule(seed, self.regions, duration)
        self.report = Report(seed, self.steps, workdir=str(self.workdir), profile=self.profile.name,
                             latency=self.latency)
        self.rng = random.Random(seed * 7919 + 1)
        self.fed: LocalFederation | None = None
        self.killed: set[str] = set()
        self.probes: list[RouteProbe] = []
        self.bucket: dict[str, bytes] = {}
        self.audits: dict[str, list[dict[str, Any]]] = {}
        self.stopping_at = float("inf")

    # ------------------------------------------------------------ federation

    def _federation(self, workdir: Path) -> LocalFederation:
        return LocalFederation(
            workdir, regions=self.regions, nats_nodes=3, proxies=True,
            pin={r: i % 3 for i, r in enumerate(self.regions)},
            shared_files=[sample_file("dr_config.yaml"), sample_file("tenants.yaml")],
            latency=self.latency, config=self.daemon_config(),
        )

    def daemon_config(self) -> dict[str, Any]:
        """What every daemon's config gets on top of ``meshd init``'s."""
        return {"membership": {"profile": self.profile.membership},
                "failover": {"hold_down": f"{self.hold_down}s", "vote_timeout": "5s", "kv": {"replicas": 3}}}

    def event(self, what: str, region: str | None = None, node: int | None = None, cause: str = "") -> None:
        self.report.events.append(Event(time.time(), what, region, node, cause))
        self.log(f"{what} {region or node if region or node is not None else ''} {cause}".strip())

    def start(self) -> LocalFederation:
        """A running, converged federation; a start that fails (a free port taken by another process
        on a shared machine) is retried in a fresh directory, since no fault has happened yet."""
        for attempt in range(1, STARTS + 1):
            self.fed = fed = self._federation(self.workdir / f"attempt{attempt}")
            try:
                fed.start()
                self.settle("start", record=False)
                return fed
            except Exception as exc:
                fed.stop()
                if attempt == STARTS:
                    raise
                self.report.notes.append(f"start attempt {attempt} failed ({type(exc).__name__}); retried")
        raise AssertionError("unreachable")

    def run(self) -> Report:
        began = time.monotonic()
        try:
            fed = self.start()
        except Exception as exc:
            self.report.violations.append(f"runner: the federation did not start: {type(exc).__name__}: {exc}")
            self.report.seconds = time.monotonic() - began
            return self.report
        try:
            for index, step in enumerate(self.steps):
                self.log(f"step {index + 1}/{len(self.steps)}: " + ", ".join(
                    f"{f.kind} {','.join(f.regions) or f.node} {f.hold:.1f}s" for f in step.faults))
                self.execute(step)
                self.settle(f"step {index + 1}")
        except Exception as exc:
            self.report.violations.append(f"runner: {type(exc).__name__}: {exc}")
        finally:
            # Daemons first, so their audit logs are final; NATS last, so the bucket can still be read.
            self.stopping_at = time.time()
            self.stop_daemons()
            self.collect_audit_logs()
            try:
                self.collect_bucket()
            except Exception as exc:
                self.report.violations.append(f"bucket: not read completely: {type(exc).__name__}: {exc}")
            fed.stop()
        self.check()
        self.report.seconds = time.monotonic() - began
        return self.report

    def stop_daemons(self, timeout: float = 10.0) -> None:
        fed = self.fed
        assert fed is not None
        for region in self.regions:
            if fed.running(region):
                fed.resume(region)
                fed.signal(region, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for region in self.regions:
            if region in fed.procs:
                try:
                    fed.procs[region].wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    fed.kill(region)

    # ------------------------------------------------------------ faults

    def execute(self, step: Step) -> None:
        fed = self.fed
        assert fed is not None
        start = time.monotonic()
        kills = [f for f in step.faults if f.kind == "kill"]
        for fault in step.faults:
            if fault.kind == "kill":
                region = fault.regions[0]
                self.event("down", region, cause="kill")
                fed.kill(region)
                self.killed.add(region)
            elif fault.kind == "pause":
                self.event("down", fault.regions[0], cause="pause")
                fed.pause(fault.regions[0])
            elif fault.kind == "cut":
                for region in fault.regions:
                    self.event("down", region, cause="cut")
                    fed.cut(region)
            elif fault.kind == "nats_restart":
                assert fault.node is not None
                self.event("node_down", node=fault.node, cause="nats restart")
                fed.servers[fault.node].stop()
        samples = {f.regions[0]: Sample(f.regions[0], self._down_since(f.regions[0])) for f in kills}
        pending = sorted(step.faults, key=lambda f: f.hold)
        for fault in pending:
            if fault.kind == "kill":
                # Hold a kill until the federation decided (or the budget ran out), then bring it back.
                self.wait_decision(fault.regions[0], samples[fault.regions[0]])
            wait = fault.hold - (time.monotonic() - start)
            if wait > 0:
                time.sleep(wait)
            self.restore(fault)
        if step.measure:
            self.report.samples.extend(samples.values())

    def _down_since(self, region: str) -> float:
        return max(e.t for e in self.report.events if e.region == region and e.what == "down")

    def restore(self, fault: Fault) -> None:
        fed = self.fed
        assert fed is not None
        if fault.kind == "kill":
            region = fault.regions[0]
            fed.start_daemon(region, wait=False)
            self.killed.discard(region)
            self.event("up", region, cause="restart")
        elif fault.kind == "pause":
            fed.resume(fault.regions[0])
            self.event("up", fault.regions[0], cause="cont")
        elif fault.kind == "cut":
            for region in fault.regions:
                fed.heal(region)
                self.event("up", region, cause="heal")
        elif fault.kind == "nats_restart":
            assert fault.node is not None
            # The node counts as up from its launch: its pinned daemons reconnect as soon as it
            # accepts clients, well before /healthz reports JetStream caught up.
            server = fed.servers[fault.node]
            server.start(wait=0)
            self.event("node_up", node=fault.node, cause="nats restart")
            server.wait_healthy()

    def running(self) -> list[str]:
        assert self.fed is not None
        return [r for r in self.regions if r not in self.killed and self.fed.running(r)]

    def wait_decision(self, region: str, sample: Sample) -> None:
        """Wait until every survivor applied a failover of ``region`` committed after the kill."""
        fed = self.fed
        assert fed is not None
        deadline = time.monotonic() + self.detect_budget
        while time.monotonic() < deadline:
            statuses = {r: fed.status(r) for r in self.running()}
            found = [d for doc in statuses.values() if doc for d in doc.get("decisions", [])
                     if d["region"] == region and d["action"] == "failover" and d["committed_at"] >= sample.killed_at]
            if found:
                sample.committed = min(d["committed_at"] for d in found) - sample.killed_at
                term = min(d["term"] for d in found)
                applied = []
                for doc in statuses.values():
                    match = [d for d in (doc or {}).get("decisions", []) if d["region"] == region
                             and d["term"] == term and d.get("applied_at")]
                    applied.append(match[0]["applied_at"] if match else None)
                if all(a is not None for a in applied):
                    sample.applied_everywhere = max(applied) - sample.killed_at
                    self.probe_routes()
                    return
            elif statuses and all(doc and doc.get("failover", {}).get("regions", {}).get(region, {}).get("state")
                                  == "failed_over" for doc in statuses.values()):
                self.report.notes.append(f"{region} was already failed over when it was killed")
                return
            time.sleep(0.05)

    # ------------------------------------------------------------ settling and probing

    def settle(self, label: str, timeout: float | None = None, record: bool = True) -> None:
        """Wait until every daemon runs, sees every other alive, and all hold the same decisions."""
        fed = self.fed
        assert fed is not None
        timeout = timeout or self.profile.settle_timeout
        for region in self.regions:
            self._wait_ready(region, timeout)

        def converged() -> bool:
            docs = {r: fed.status(r) for r in self.regions}
            if any(d is None for d in docs.values()):
                return False
            for region, doc in docs.items():
                states = {m["region"]: m["state"] for m in doc.get("members", [])}
                if any(states.get(other) != "alive" for other in self.regions if other != region):
                    return False
            terms = {json.dumps(sorted((d["region"], d["term"]) for d in doc.get("decisions", [])))
                     for doc in docs.values()}
            return len(terms) == 1

        try:
            fed.wait_for(converged, timeout, interval=0.2, what=f"convergence after {label}")
        except TimeoutError as exc:
            if not record:
                raise
            self.report.violations.append(f"settle: {exc}")
            return
        self.probe_routes()

    def _wait_ready(self, region: str, timeout: float) -> None:
        """``wait_ready``, moving a restarted daemon to another HTTP port if another process took its own."""
        fed = self.fed
        assert fed is not None
        for _ in range(STARTS):
            try:
                fed.wait_ready(region, timeout)
                return
            except RuntimeError as exc:
                if "Address already in use" not in str(exc):
                    raise
                port = free_port()
                self.report.notes.append(f"{region}'s HTTP port was taken on the machine; restarted on {port}")
                fed.http_ports[region] = port
                fed.patch_config(region, {"http": {"port": port}})
                fed.start_daemon(region, wait=False)
        fed.wait_ready(region, timeout)

    def probe_routes(self) -> None:
        fed = self.fed
        assert fed is not None
        tenants = yaml.safe_load((fed.dir / "tenants.yaml").read_text())["tenants"]
        down = {e.region for e in self._open_faults()}
        responders = [r for r in self.running() if r not in down]
        if not responders:
            return
        for tenant in tenants:
            location = self.rng.choice(LOCATIONS)
            responder = self.rng.choice(responders)
            status, answer = fed.http(responder, f"/v1/route?tenant={tenant}&from={location}")
            self.report.probes += 1
            self.probes.append(RouteProbe(time.time(), responder, tenant, location, status, answer))

    def _open_faults(self) -> list[Event]:
        open_: dict[str, Event] = {}
        for e in self.report.events:
            if e.region is None:
                continue
            if e.what == "down":
                open_[e.region] = e
            else:
                open_.pop(e.region, None)
        return list(open_.values())

    # ------------------------------------------------------------ collecting

    def collect_bucket(self, timeout: float = 60.0) -> None:
        """Every slot of the bucket, read key by key and checked against the stream's message count.

        Listing keys right after NATS node restarts can come back short, so slots are read in
        order per region, and the whole read is retried until it accounts for every message in
        the stream (history 1, no deletes: one message per slot) or ``timeout`` passes.
        """
        import anyio

        fed = self.fed
        assert fed is not None
        for server in fed.servers:
            server.wait_healthy(timeout)
        user = self.regions[0]
        password = (fed.dir / "secrets" / f"{user}.nats-password").read_text().strip()
        urls = [s.url for s in fed.servers]

        async def read_all(js: Any) -> tuple[dict[str, bytes], int]:
            from nats.js.errors import KeyNotFoundError

            kv = await js.key_value(BUCKET)
            expected = (await js.stream_info(f"KV_{BUCKET}")).state.messages
            out: dict[str, bytes] = {}
            for region in self.regions:
                term = 1
                while True:
                    try:
                        entry = await kv.get(slot_key(region, term))
                    except KeyNotFoundError:
                        break
                    out[entry.key] = entry.value
                    term += 1
            return out, expected

        async def read() -> dict[str, bytes]:
            import nats

            # A region's NATS user may only receive replies under its own inbox prefix.
            nc = await nats.connect(servers=urls, user=user, password=password, connect_timeout=5,
                                    inbox_prefix=f"_INBOX.{user}")
            try:
                js = nc.jetstream(timeout=5)
                deadline = time.monotonic() + timeout
                while True:
                    try:
                        out, expected = await read_all(js)
                        if len(out) == expected:
                            return out
                        problem = f"{len(out)} contiguous slots read, the stream holds {expected} (a gap?)"
                    except Exception as exc:
                        problem = f"{type(exc).__name__}: {exc}"
                    if time.monotonic() > deadline:
                        raise RuntimeError(problem)
                    await anyio.sleep(0.5)
            finally:
                await nc.close()

        self.bucket = anyio.run(read, backend="asyncio")

    def collect_audit_logs(self) -> None:
        assert self.fed is not None
        trust = TrustStore(load_model_file(self.fed.dir / "trust.yaml", TrustBundle))
        for region in self.regions:
            path = self.fed.state_dir(region) / "failover" / "audit.log"
            result = verify(path, trust=trust, region=region)
            if not result.ok:
                self.report.violations.append(f"audit log of {region} does not verify: {result.problem}")
            self.audits[region] = [{"seq": e.seq, "ts": e.ts, "kind": e.kind, "data": e.data}
                                   for e in result.entries]

    # ------------------------------------------------------------ checking

    def down_at(self, region: str, t: float) -> bool:
        """Ground truth: was ``region``'s daemon unable to act at ``t`` (killed, paused, cut, its node down)?"""
        state = False
        node = self.regions.index(region) % 3
        node_down = False
        for e in self.report.events:
            if e.t > t:
                break
            if e.region == region:
                state = e.what == "down"
            elif e.node == node:
                node_down = e.what == "node_down"
        return state or node_down

    def connected_at(self, t: float) -> int:
        return sum(1 for r in self.regions if not self.down_at(r, t))

    def _times(self, start: float, end: float) -> list[float]:
        return [start] + [e.t for e in self.report.events if start < e.t < end] + [end]

    def check(self) -> None:
        assert self.fed is not None
        violations = self.report.violations
        region_map = load_model_file(self.fed.dir / "region_map.yaml", RegionMap)
        trust = TrustStore(load_model_file(self.fed.dir / "trust.yaml", TrustBundle))
        jurisdictions = {r: region_map.regions[r].jurisdiction for r in self.regions}
        records: dict[tuple[str, int], Record] = {}
        for key, value in self.bucket.items():
            slot = parse_slot_key(key)
            if slot is None:
                violations.append(f"bucket: unexpected key {key!r}")
                continue
            try:
                record = decode_record(value, trust, self.fed.federation, jurisdictions, *slot)
            except InvalidRecord as exc:
                violations.append(f"bucket: {key} does not prove its quorum or does not verify: {exc}")
                continue
            records[slot] = record
            self.report.records.append({"region": record.region, "term": record.term, "outcome": record.outcome,
                                        "action": record.action, "target": record.target,
                                        "voters": list(record.voters), "committed_by": record.committed_by,
                                        "committed_at": record.committed_at, "digest": record.digest})
        by_region: dict[str, list[int]] = {}
        for region, term in records:
            by_region.setdefault(region, []).append(term)
        for region, terms in by_region.items():
            if sorted(terms) != list(range(1, max(terms) + 1)):
                violations.append(f"bucket: terms of {region} are not contiguous: {sorted(terms)}")

        self._check_audits(records)
        for record in records.values():
            if not record.committed:
                continue
            self._check_minority(record)
        self._check_liveness(records)
        tenants = yaml.safe_load((self.fed.dir / "tenants.yaml").read_text())["tenants"]
        self._check_routes(records, jurisdictions, tenants)

    def _check_audits(self, records: dict[tuple[str, int], Record]) -> None:
        violations = self.report.violations
        for region, entries in self.audits.items():
            votes: dict[tuple[str, int], int] = {}
            for e in entries:
                if e["kind"] == "vote":
                    key = (e["data"]["region"], e["data"]["term"])
                    votes[key] = votes.get(key, 0) + 1
                    self.report.votes += 1
                elif e["kind"] == "decision":
                    key = (e["data"]["region"], e["data"]["term"])
                    record = records.get(key)
                    if record is None:
                        violations.append(f"{region} applied {key[0]}/{key[1]}, which is not in the bucket")
                    elif e["data"].get("digest") != record.digest:
                        violations.append(f"{region} applied another record for {key[0]}/{key[1]} than the bucket's")
            for key, count in votes.items():
                if count > 1:
                    violations.append(f"{region} voted {count} times on {key[0]}/{key[1]}")
            applied = {(e["data"]["region"], e["data"]["term"]) for e in entries if e["kind"] == "decision"}
            # A decision made while the daemons were being stopped may not reach all of them.
            missing = [k for k, r in records.items() if r.committed and k not in applied
                       and r.committed_at < self.stopping_at - self.slack]
            if missing:
                violations.append(f"{region} never applied {', '.join(f'{r}/{t}' for r, t in sorted(missing))}")
        # Each voter of a decision logged that vote itself (its audit log is intact).
        for (region, term), record in records.items():
            for voter in record.voters:
                logged = [e for e in self.audits.get(voter, []) if e["kind"] == "vote"
                          and e["data"]["region"] == region and e["data"]["term"] == term]
                if not logged or logged[0]["data"]["vote"] != "yes":
                    violations.append(f"{voter} is a voter of {region}/{term} but its audit log has no yes vote")

    def _check_minority(self, record: Record) -> None:
        t = record.committed_at
        # The record proves when each voter last renewed its vote (one host, one clock here).
        if record.vote_signed_at and min(record.vote_signed_at) < t - self.slack:
            self.report.violations.append(
                f"{record.region}/{record.term} was committed with a vote last renewed "
                f"{t - min(record.vote_signed_at):.2f}s before the commit (lease {self.lease:g}s)")
        renewed_up = sum(1 for voter, at in zip(record.voters, record.vote_signed_at)
                         if not (self.down_at(voter, at) and self.down_at(voter, at - 0.25)))
        if record.vote_signed_at and renewed_up < self.quorum:
            self.report.violations.append(
                f"{record.region}/{record.term}: only {renewed_up} voters were connected when they last renewed "
                f"their votes (quorum {self.quorum})")
        window = self._times(t - self.slack, t)
        if all(self.connected_at(x) < self.quorum for x in window):
            self.report.violations.append(
                f"{record.region}/{record.term} committed at {t:.3f} while only "
                f"{self.connected_at(t)} daemons were connected (quorum {self.quorum}): a minority decided")
        if all(self.down_at(record.committed_by, x) for x in window):
            self.report.violations.append(
                f"{record.region}/{record.term} committed by {record.committed_by}, which was cut off, paused or dead")

    def _check_liveness(self, records: dict[tuple[str, int], Record]) -> None:
        for e in self.report.events:
            if e.what != "down" or e.cause != "kill" or e.region is None:
                continue
            region, t = e.region, e.t
            up = min((x.t for x in self.report.events if x.region == region and x.what == "up" and x.t > t),
                     default=float("inf"))
            end = min(up, t + self.detect_budget)
            mine = [r for (reg, _), r in records.items() if reg == region and r.committed]
            if any(r.action == "failover" and t <= r.committed_at <= end for r in mine):
                self.report.liveness_checked += 1
                continue
            before = [r for r in mine if r.committed_at < t]
            if before and max(before, key=lambda r: r.term).action == "failover":
                self.report.notes.append(f"{region} was already failed over when killed at {t:.3f}")
                continue
            if up - t < self.detect_budget:
                self.report.notes.append(f"{region} killed for {up - t:.1f}s only: back before a decision")
                continue
            if any(self.connected_at(x) < self.quorum for x in self._times(t, t + self.detect_budget)):
                self.report.notes.append(f"{region} killed at {t:.3f} while no quorum stayed connected: "
                                         "no decision promised")
                continue
            self.report.liveness_checked += 1
            self.report.violations.append(
                f"liveness: {region} was killed at {t:.3f} with a quorum connected but no failover was "
                f"committed within {self.detect_budget:g}s")

    def _check_routes(self, records: dict[tuple[str, int], Record], jurisdictions: dict[str, str],
                      tenants: dict[str, Any]) -> None:
        for probe in self.probes:
            answer = probe.answer if isinstance(probe.answer, dict) else {}
            if not answer.get("ok"):
                # not_ready: a restarted daemon that has not read the decisions yet refuses, rightly.
                if answer.get("error") not in ("no_eligible_region", "not_ready"):
                    self.report.violations.append(f"route {probe.tenant} from {probe.location} via "
                                                  f"{probe.responder}: HTTP {probe.status} {answer or probe.answer}")
                continue
            chosen = answer.get("region")
            residency = tenants[probe.tenant]["residency"]
            if jurisdictions.get(chosen) != residency:
                self.report.violations.append(f"route {probe.tenant} ({residency}) went to {chosen} in "
                                              f"{jurisdictions.get(chosen)}: outside its residency")
            killed_since = self._killed_since(chosen, probe.t)
            if killed_since is not None and probe.t - killed_since > self.detect_budget:
                self.report.violations.append(f"route {probe.tenant} went to {chosen}, dead for "
                                              f"{probe.t - killed_since:.1f}s")
            # Failed over for the whole of [t - slack, t]: a decision just made may not be applied yet.
            mine = [r for (reg, _), r in records.items() if reg == chosen and r.committed]
            settled = [r for r in mine if r.committed_at <= probe.t - self.slack]
            moving = any(probe.t - self.slack < r.committed_at <= probe.t for r in mine)
            latest = max(settled, key=lambda r: r.term) if settled else None
            if latest is not None and latest.action == "failover" and not moving:
                self.report.violations.append(
                    f"route {probe.tenant} from {probe.location} via {probe.responder} at {probe.t:.3f} went to "
                    f"{chosen}, failed over since {latest.committed_at:.3f} (term {latest.term}, target "
                    f"{latest.target})")

    def _killed_since(self, region: str, t: float) -> float | None:
        since = None
        for e in self.report.events:
            if e.t > t:
                break
            if e.region == region:
                since = e.t if (e.what == "down" and e.cause == "kill") else None
        return since


def run_schedule(workdir: Path, seed: int, **kw: Any) -> Report:
    """Run the schedule of ``seed`` in ``workdir`` and check it; the report lists any violation."""
    return ChaosRun(workdir, seed, **kw).run()
