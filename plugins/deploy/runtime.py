"""The deploy plugin inside a daemon: carry out this region's part of every rollout.

No controller: every daemon runs the same loop. Each tick it reads every
rollout; for one whose current stage holds this region it takes the
region's lease (compare-and-set), then does the one next thing the record
says (decide the next step, put its weights in place, run a check, move
on, roll back) and stores it with one compare-and-set. A daemon killed
anywhere in between leaves a record that says what is left to do, and the
restarted daemon does exactly that: only a region's own daemon ever holds
its lease, because only it is trusted to drive that region's load balancer
forward.

Any daemon may end a rollout whose region is seen dead or failed over and
whose lease has run out: the region's own daemon cannot, and the canary
must not keep its traffic (the peer puts it back on stable when it can
reach the region's load balancer; the region's daemon does when it is back).
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import string
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio

from meshd.alerting import Alert
from meshd.config import ConfigError
from meshd.deploydriver import DriverError, ServerCounters, TrafficDriver, TrafficStep

from .analysis import Check, judge, judge_probes, judge_readings
from .config import DeployConfig, pipeline_path
from .pipeline import Pipeline, Plan, check_service, load_pipeline
from .record import ABORTED, ACTIVE, FAILED, GATED, PAUSED, PROMOTED, ROLLED_BACK, RUNNING, RegionRun, Rollout
from .store import Conflict, RolloutStore

SECTION = "deploy"
DEAD_STATES = ("dead",)
FAILED_OVER = "failed over"


def dr_pairs(config: Any) -> list[tuple[str, str]]:
    """The DR pairs of the failover plugin's dr_config.yaml, when that plugin is loaded."""
    from meshd.plugins import DisabledSection

    # A failover plugin left unloaded keeps its section as written, unvalidated: no DR pairs to read from it.
    if isinstance(config.plugin_sections.get("failover", DisabledSection()), DisabledSection):
        return []
    from meshd_plugins.failover.config import dr_config_path
    from meshd_plugins.failover.drconfig import load_dr_config

    path = dr_config_path(config)
    if not path.exists():
        return []
    dr, _ = load_dr_config(path, config.region_map)
    if dr is None:
        return []
    return [(name, entry.pair) for name, entry in dr.regions.items() if entry.pair]


def load_for(config: Any) -> Pipeline:
    """The pipeline of ``config``; :class:`ConfigError` when it does not check out."""
    pipeline, issues = load_pipeline(pipeline_path(config), config.region_map, dr_pairs(config))
    if pipeline is None:
        raise ConfigError(issues)
    return pipeline


@dataclass
class Watch:
    """What only the driving daemon keeps about a step: the last reading and when it was taken."""

    baseline: ServerCounters | None = None
    at: float = 0.0
    last: Check | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)
    probe_results: dict[str, bool | None] = field(default_factory=dict)
    """With ``analysis.source: probes``: each canary probe's last outcome, and the interval's samples below."""
    probe_ms: list[float] = field(default_factory=list)
    rounds: int = 0
    failed_rounds: int = 0


class Runtime:
    def __init__(self, daemon: Any):
        self.daemon = daemon
        self.region: str = daemon.region
        self.settings: DeployConfig = daemon.plugin_config(SECTION)
        self.log = logging.getLogger(f"meshd.{daemon.region}.deploy")
        self.holder = f"{daemon.region}/{daemon.incarnation}"
        self.pipeline: Pipeline | None = None
        self.store: RolloutStore | None = None
        self.state, self.detail = "starting", ""
        self.drivers: dict[tuple[str, str], TrafficDriver] = {}
        self.watches: dict[tuple[str, str, int], Watch] = {}
        self.gone: dict[str, str] = {}
        """Regions seen dead or failed over, with why."""
        self.wake = anyio.Event()
        self.known: set[str] = set()
        """Services with a rollout record, from the bucket's watch."""
        self.reported: dict[str, str] = {}
        """The last error said per concern: a driver that stays down is logged once, not every tick."""
        m = daemon.metrics
        self.m_transitions = m.counter("deploy_transitions_total", "Rollout transitions this daemon stored", ["kind"])
        self.m_checks = m.counter("deploy_checks_total", "Canary analysis checks run here, by verdict", ["verdict"])
        self.m_errors = m.counter("deploy_errors_total", "Rollout work that failed here, by stage", ["op"])

    # ------------------------------------------------------------ set-up

    async def start(self) -> None:
        path = pipeline_path(self.daemon.config)
        if not path.exists():
            self.state, self.detail = "disabled", f"no pipeline file {path}"
            return
        try:
            self.pipeline = load_for(self.daemon.config)
        except ConfigError as exc:  # checked at start; changed underneath since
            self.state, self.detail = "failed", str(exc)
            self.log.error("pipeline is invalid: %s", exc)
            return
        self.state = "connecting"

    async def open(self) -> bool:
        if self.store is not None:
            return True
        if self.pipeline is None:
            return False
        try:
            with anyio.fail_after(5):
                kv = await self.daemon.transport.key_value(self.settings.bucket, replicas=self.settings.replicas)
        except Exception as exc:
            self.m_errors.labels("kv").inc()
            self.detail = f"rollout bucket {self.settings.bucket} unavailable: {type(exc).__name__}: {exc}"
            return False
        self.store = RolloutStore(kv)
        self.state, self.detail = "running", ""
        return True

    def reload(self) -> None:
        self.settings = self.daemon.plugin_config(SECTION)
        try:
            self.pipeline = load_for(self.daemon.config)
        except ConfigError as exc:
            self.log.error("pipeline is invalid, keeping the previous one: %s", exc)

    def driver(self, plan: Plan, region: str) -> TrafficDriver:
        key = (plan.service, region)
        if key not in self.drivers:
            settings = dict(plan.drivers[region])
            kind = settings.pop("kind")
            built = self.daemon.hooks.call_sync("meshd_deploy_driver", kind=kind, region=region, config=settings)
            if built is None:
                raise DriverError(f"no plugin provides a deploy driver of kind {kind!r} (region {region})")
            self.drivers[key] = built
        return self.drivers[key]

    # ------------------------------------------------------------ the loop

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.watch)
            while True:
                if await self.open():
                    for service in sorted(self.known):
                        try:
                            await self.work(service)
                        except Conflict as exc:
                            if exc.code == "corrupt":
                                self.m_errors.labels("record").inc()
                                self.report(f"work.{service}", str(exc))
                            else:
                                self.log.debug("rollout of %s: %s", service, exc)
                        except Exception as exc:  # a bad record or a bug: counted, said once, retried
                            self.m_errors.labels("step").inc()
                            self.report(f"work.{service}", f"rollout work on {service} failed, retrying each "
                                                           f"tick: {type(exc).__name__}: {exc}")
                with anyio.move_on_after(self.settings.tick):
                    await self.wake.wait()
                self.wake = anyio.Event()

    async def watch(self) -> None:
        """Keep ``known`` (the services with a rollout record) from a watch of the bucket.

        A watch rather than a key listing per tick: each listing is a JetStream consumer, and a few
        daemons listing every tick exhaust the server's consumer limit. A change also wakes the loop,
        so an operator's pause or abort is acted on at once.
        """
        while True:
            if self.store is None:
                await anyio.sleep(self.settings.tick)
                continue
            try:
                watch = await self.store.kv.watch()
                try:
                    async for change in watch:
                        if change is None or not change.key.startswith("rollout."):
                            continue
                        service = change.key.split(".", 1)[1]
                        if change.value is None:
                            self.known.discard(service)
                        else:
                            self.known.add(service)
                        self.wake.set()
                finally:
                    await watch.stop()
            except Exception as exc:
                self.m_errors.labels("watch").inc()
                self.report("watch", f"cannot watch the rollout bucket: {type(exc).__name__}: {exc}")
            await anyio.sleep(1.0)  # the watch ended (a reconnect) or failed: open a new one

    def report(self, concern: str, message: str) -> None:
        level = logging.DEBUG if self.reported.get(concern) == message else logging.ERROR
        self.reported[concern] = message
        self.log.log(level, "%s", message)

    def plan_of(self, rollout: Rollout) -> Plan | None:
        if self.pipeline is None or check_service(self.pipeline, rollout.service) is not None:
            return None
        return self.pipeline.plan(rollout.service)

    async def work(self, service: str) -> None:
        assert self.store is not None
        got = await self.store.get(service)
        if got is None:
            return
        rollout, _ = got
        plan = self.plan_of(rollout)
        if plan is None:
            return
        if not rollout.active:
            await self.restore(rollout, plan, self.region)
            return
        for region in rollout.stage_regions():
            run = rollout.regions[region]
            # A daemon restarted within its lease takes the lease back and resumes; a region still gone
            # once its lease ran out is not coming back in time, and its canary must not keep traffic.
            gone = self.gone.get(region)
            if gone is not None and not run.done and (gone == FAILED_OVER or run.lease_until < time.time()):
                await self.end(rollout, plan, region, FAILED, f"region {region} is {gone}")
                return
        if self.region not in rollout.stage_regions() or rollout.regions[self.region].done:
            return
        if not await self.lease(rollout):
            return
        if rollout.state != RUNNING:
            return
        await self.drive(rollout, plan)

    async def lease(self, rollout: Rollout) -> bool:
        """Hold this region's lease on ``rollout``; renewed once a fifth of it is gone.

        Renewed early because what is left of it at a crash is the time a restarted daemon has to take
        it back before the peers end the rollout.
        """
        assert self.store is not None
        run, now = rollout.regions[self.region], time.time()
        if run.lease_holder == self.holder and run.lease_until - now > self.settings.lease * 0.8:
            return True
        mine_before = run.lease_holder.split("/")[0] == self.region
        if run.lease_holder not in ("", self.holder) and run.lease_until > now and not mine_before:
            return False

        def take(r: Rollout) -> bool:
            rr = r.regions[self.region]
            if rr.lease_holder not in ("", self.holder) and rr.lease_until > time.time() \
                    and rr.lease_holder.split("/")[0] != self.region:
                raise Conflict("leased", f"{rr.lease_holder} holds the lease of {self.region}")
            if rr.lease_holder != self.holder:
                r.record("lease", {"region": self.region, "holder": self.holder, "previous": rr.lease_holder})
            rr.lease_holder, rr.lease_until = self.holder, time.time() + self.settings.lease
            return True

        stored = await self.store.mutate(rollout.service, take)
        if stored is not None:
            rollout.regions[self.region] = stored.regions[self.region]
            rollout.log = stored.log
        return True

    async def transition(self, rollout: Rollout, kind: str, change: Any, data: dict[str, Any]) -> Rollout | None:
        """One compare-and-set: ``change(rollout, run)`` on the stored record, if it still matches ours."""
        assert self.store is not None
        expected = (rollout.id, rollout.regions[self.region].step, rollout.regions[self.region].phase)

        def apply(r: Rollout) -> bool:
            run = r.regions[self.region]
            if (r.id, run.step, run.phase) != expected or r.state != RUNNING:
                return False  # someone moved it first: decide again on what is there
            change(r, run)
            r.record(kind, {"region": self.region, **data})
            return True

        stored = await self.store.mutate(rollout.service, apply)
        if stored is not None:
            self.m_transitions.labels(kind).inc()
        return stored

    async def drive(self, rollout: Rollout, plan: Plan) -> None:
        run, now = rollout.regions[self.region], time.time()
        if run.step >= 0 and now - run.step_started > plan.progress_deadline:
            await self.end(rollout, plan, self.region, FAILED,
                           f"step {plan.steps[run.step]} % in {self.region} made no progress for "
                           f"{plan.progress_deadline:g} s (progress deadline)")
            return
        if run.step < 0:
            def first(r: Rollout, rr: RegionRun) -> None:
                rr.step, rr.phase, rr.step_started, rr.passed = 0, "apply", time.time(), False
            await self.transition(rollout, "step", first, {"step": 0, "weight": plan.steps[0]})
            return
        if run.phase == "apply":
            await self.put_weights(rollout, plan, run)
            return
        await self.bake(rollout, plan, run, now)

    async def put_weights(self, rollout: Rollout, plan: Plan, run: RegionRun) -> None:
        weight = plan.steps[run.step]
        step = TrafficStep(rollout.service, self.region, rollout.version, weight, rollout.id, run.step)
        try:
            await self.driver(plan, self.region).apply(step)
        except DriverError as exc:
            # Retried each tick; the progress deadline ends a rollout whose driver never answers.
            self.m_errors.labels("driver").inc()
            self.report("driver", f"rollout {rollout.id} of {rollout.service}: step {weight} %: {exc}")
            return
        self.reported.pop("driver", None)

        def baked(r: Rollout, rr: RegionRun) -> None:
            rr.phase, rr.step_started, rr.passed = "bake", time.time(), False
        if await self.transition(rollout, "applied", baked, {"step": run.step, "weight": weight}) is not None:
            # The baseline is taken now, so the first check judges the step's first interval.
            watch = self.watches[(rollout.id, self.region, run.step)] = Watch()
            await self.check(rollout, plan, watch, time.time())

    async def bake(self, rollout: Rollout, plan: Plan, run: RegionRun, now: float) -> None:
        watch = self.watches.setdefault((rollout.id, self.region, run.step), Watch())
        if plan.analysis.source == "probes" and watch.baseline is not None:
            await self.sample_probes(plan, watch)
        if now - watch.at >= plan.analysis.interval or watch.baseline is None:
            check = await self.check(rollout, plan, watch, now)
            if check is not None:
                watch.last = check
                self.m_checks.labels(check.verdict).inc()
                if check.verdict == "fail":
                    await self.failed_check(rollout, plan, run, check)
                    return
                if check.verdict == "pass" and not run.passed:
                    def passed(r: Rollout, rr: RegionRun) -> None:
                        rr.passed = True
                    stored = await self.transition(rollout, "check_passed", passed,
                                                   {"step": run.step, "check": check.as_dict()})
                    if stored is not None:
                        run = stored.regions[self.region]
        if not run.passed:
            return  # never moves on without a passing check: no data is not good data
        if now - run.step_started < plan.bake and not rollout.promote_requested:
            return
        if run.step + 1 < len(plan.steps):
            nxt = run.step + 1

            def advance(r: Rollout, rr: RegionRun) -> None:
                rr.step, rr.phase, rr.step_started, rr.passed = nxt, "apply", time.time(), False
                r.promote_requested = False
            await self.transition(rollout, "step", advance, {"step": nxt, "weight": plan.steps[nxt]})
            return
        await self.region_done(rollout, plan, run)

    async def region_done(self, rollout: Rollout, plan: Plan, run: RegionRun) -> None:
        if plan.smoke:
            from .smoke import smoke

            failed = [r for r in await smoke(self.daemon.config, self.daemon.hooks) if r.failed]
            if failed:
                what = "; ".join(f"{r.probe}: {r.error}" for r in failed)
                await self.end(rollout, plan, self.region, FAILED, f"smoke test of {self.region} failed: {what}")
                return
        def done(r: Rollout, rr: RegionRun) -> None:
            rr.done = True
            r.promote_requested = False
            if all(r.regions[name].done for name in r.stage_regions()):
                if r.stage + 1 < len(r.stages):
                    r.stage += 1
                    r.record("stage", {"stage": r.stage, "regions": r.stage_regions()})
                    if r.gates[r.stage] == "manual":
                        r.state = GATED
                else:
                    r.state = PROMOTED
        stored = await self.transition(rollout, "region_promoted", done, {"version": rollout.version})
        if stored is not None and stored.state == PROMOTED:
            self.m_transitions.labels("promoted").inc()
            self.log.info("rollout %s: %s %s promoted everywhere", rollout.id, rollout.service, rollout.version)

    async def check(self, rollout: Rollout, plan: Plan, watch: Watch, now: float) -> Check | None:
        """Read the driver; judge the interval since the last reading (None: first reading, a baseline)."""
        if plan.analysis.source == "probes":
            return self.probe_check(plan, watch, now)
        if plan.analysis.source == "prometheus":
            return await self.prometheus_check(rollout, plan, watch, now)
        try:
            stats = await self.driver(plan, self.region).stats()
        except DriverError as exc:
            self.m_errors.labels("stats").inc()
            self.report("stats", f"rollout {rollout.id}: cannot read the canary's traffic: {exc}")
            return None
        self.reported.pop("stats", None)
        if stats is None:
            return Check("inconclusive", 0, None, None, f"the {plan.drivers[self.region]['kind']} driver reports no "
                                                        "traffic; use analysis.source: probes")
        previous, watch.baseline, watch.at = watch.baseline, stats.canary, now
        if previous is None:
            return None
        return dataclasses.replace(judge(previous, stats.canary, plan.analysis), at=round(time.time(), 6))

    async def sample_probes(self, plan: Plan, watch: Watch) -> None:
        """One round of the canary probes (``analysis.probes``), each tick: the interval's p99 needs many samples."""
        from .smoke import smoke

        results = await smoke(self.daemon.config, self.daemon.hooks, set(plan.analysis.probes))
        watch.rounds += 1
        watch.failed_rounds += any(r.failed for r in results)
        for r in results:
            watch.probe_results[r.probe] = not r.failed
            if not r.failed and r.value is not None and r.kind in ("http", "tcp"):
                watch.probe_ms.append(r.value * 1000.0)  # these kinds measure latency in seconds

    def probe_check(self, plan: Plan, watch: Watch, now: float) -> Check | None:
        """The canary probes' interval: their last outcomes and the p99 of their latency samples."""
        previous, watch.baseline, watch.at = watch.baseline, ServerCounters(0, 0), now
        samples, rounds, failed = watch.probe_ms, watch.rounds, watch.failed_rounds
        watch.probe_ms, watch.rounds, watch.failed_rounds = [], 0, 0
        if previous is None:
            return None  # the interval starts now: sampling begins with the next tick
        check = judge_probes(watch.probe_results, plan.analysis, samples, rounds, failed)
        return dataclasses.replace(check, at=round(time.time(), 6))

    async def prometheus_check(self, rollout: Rollout, plan: Plan, watch: Watch, now: float) -> Check:
        """Prometheus's answers to the service's two instant queries; any doubt is inconclusive."""
        from meshd.prometheus import PrometheusUnreachable, QueryError, instant_query  # only canaries judged by it

        queries = plan.analysis.prometheus
        assert queries is not None  # load_pipeline refuses source prometheus without its queries
        watch.baseline, watch.at = watch.baseline or ServerCounters(0, 0), now
        readings: list[float | None] = []
        # $version picks the canary's build: the window of a previous rollout's canary must not judge this one.
        names = {"version": rollout.version, "service": rollout.service, "region": self.region}
        for name, query in (("success_rate", queries.success_rate), ("latency_ms", queries.latency_ms)):
            try:
                query = string.Template(query).safe_substitute(names)
                readings.append(await instant_query(queries.url, query, queries.timeout))
            except PrometheusUnreachable as exc:
                self.m_errors.labels("prometheus").inc()
                self.report("prometheus", f"rollout {rollout.id} of {rollout.service}: {exc}")
                return Check("inconclusive", 0, None, None, str(exc), at=round(time.time(), 6))
            except QueryError as exc:
                self.m_errors.labels("prometheus_query").inc()
                reason = f"Prometheus query {name} of {rollout.service}: {exc}"
                self.report("prometheus_query", f"rollout {rollout.id}: {reason}")
                return Check("inconclusive", 0, None, None, reason, at=round(time.time(), 6))
        self.reported.pop("prometheus", None)
        self.reported.pop("prometheus_query", None)
        return dataclasses.replace(judge_readings(readings[0], readings[1], plan.analysis), at=round(time.time(), 6))

    async def failed_check(self, rollout: Rollout, plan: Plan, run: RegionRun, check: Check) -> None:
        failures = run.failures + 1
        self.log.warning("rollout %s of %s in %s: check failed (%d of %d): %s", rollout.id, rollout.service,
                         self.region, failures, plan.analysis.failure_limit, check.reason)
        if failures >= plan.analysis.failure_limit:
            await self.end(rollout, plan, self.region, ROLLED_BACK, check.reason, check.as_dict())
            return

        def count(r: Rollout, rr: RegionRun) -> None:
            rr.failures = failures
        await self.transition(rollout, "check_failed", count, {"step": run.step, "check": check.as_dict()})

    # ------------------------------------------------------------ endings

    async def end(self, rollout: Rollout, plan: Plan, region: str, state: str, reason: str,
                  check: dict[str, Any] | None = None) -> None:
        """Stop ``rollout`` because of ``region``: traffic back to stable first, then the record, then the alert."""
        assert self.store is not None
        restored = await self.to_stable(rollout, plan, region)

        def stop(r: Rollout) -> bool:
            if r.id != rollout.id or not r.active:
                return False
            r.state, r.reason = state, reason
            if restored:
                r.regions[region].restored = True
            data: dict[str, Any] = {"region": region, "reason": reason, "restored": restored}
            if check is not None:
                data["check"] = check
            r.record(state, data)
            return True

        stored = await self.store.mutate(rollout.service, stop)
        if stored is None:
            return
        self.m_transitions.labels(state).inc()
        self.log.warning("rollout %s of %s %s in %s: %s", rollout.id, rollout.service, state, region, reason)
        name = "RolloutRolledBack" if state == ROLLED_BACK else "RolloutFailed"
        await self.daemon.hooks.alert(self.daemon, Alert(
            labels={"alertname": name, "severity": "critical", "service": rollout.service, "region": region,
                    "rollout": rollout.id},
            annotations={"summary": f"{rollout.service} {rollout.version} {state} in {region}: {reason}",
                         "runbook_url": "docs/rollback.md"}))

    async def to_stable(self, rollout: Rollout, plan: Plan, region: str) -> bool:
        step = TrafficStep(rollout.service, region, rollout.version, 0, rollout.id,
                           max(rollout.regions[region].step, 0), action="rollback")
        try:
            await self.driver(plan, region).apply(step)
            return True
        except DriverError as exc:
            self.m_errors.labels("rollback").inc()
            self.log.error("rollout %s: cannot put %s's traffic back on stable: %s", rollout.id, region, exc)
            return False

    async def restore(self, rollout: Rollout, plan: Plan, region: str) -> None:
        """After a rollback, abort or failure: this region's traffic back on stable, once."""
        assert self.store is not None
        run = rollout.regions.get(region)
        if rollout.state == PROMOTED or run is None or run.done or run.restored or run.step < 0:
            return
        if not await self.to_stable(rollout, plan, region):
            return

        def mark(r: Rollout) -> bool:
            rr = r.regions[region]
            if r.id != rollout.id or rr.restored:
                return False
            rr.restored = True
            r.record("restored", {"region": region, "by": self.region})
            return True
        if await self.store.mutate(rollout.service, mark) is not None:
            self.m_transitions.labels("restored").inc()

    # ------------------------------------------------------------ events and requests

    def member_changed(self, region: str, state: str) -> None:
        if state in DEAD_STATES:
            self.gone[region] = state
            self.wake.set()
        elif state == "alive" and self.gone.get(region) in DEAD_STATES:
            self.gone.pop(region, None)

    def failed_over(self, region: str, action: str) -> None:
        if action == "failover":
            self.gone[region] = FAILED_OVER
            self.wake.set()
        elif action == "failback":
            self.gone.pop(region, None)

    def _ready(self) -> tuple[Pipeline, RolloutStore]:
        if self.pipeline is None or self.store is None:
            raise Conflict("not_running", f"deploy is {self.state}: {self.detail or 'starting'}")
        return self.pipeline, self.store

    async def start_rollout(self, service: str, version: str, region: str | None, whole: bool,
                            now: datetime | None = None) -> Rollout:
        pipeline, store = self._ready()
        if (why := check_service(pipeline, service)) is not None:
            raise Conflict("unknown_service", why)
        if not version:
            raise Conflict("bad_request", "--version is required")
        plan = pipeline.plan(service)
        if whole == (region is not None):
            raise Conflict("bad_request", "give either --region R or --pipeline")
        if region is not None and region not in plan.regions():
            raise Conflict("unknown_region", f"region {region!r} is in no stage of {service} "
                                             f"(stages: {', '.join(plan.regions())})")
        frozen = pipeline.frozen(now or datetime.now(UTC))
        if frozen is not None:
            raise Conflict("frozen", f"freeze window {frozen!r} is in force: no rollout starts now")
        stages = [[region]] if region is not None else [list(s.regions) for s in plan.stages]
        gates = ["auto"] if region is not None else [s.gate for s in plan.stages]
        rollout = Rollout(id=secrets.token_hex(4), service=service, version=version, stages=stages, gates=gates,
                          steps=list(plan.steps), started=time.time(),
                          regions={r: RegionRun() for stage in stages for r in stage})
        if gates[0] == "manual":
            rollout.state = GATED
        rollout.record("started", {"version": version, "stages": stages, "steps": plan.steps, "by": self.region})
        await store.start(rollout)
        self.known.add(service)
        self.wake.set()
        return rollout

    async def operator(self, service: str, action: str) -> Rollout:
        _, store = self._ready()

        def change(r: Rollout) -> bool:
            if not r.active:
                raise Conflict("not_running", f"rollout {r.id} of {service} is {r.state}")
            if action == "pause":
                if r.state == PAUSED:
                    return False
                r.state = PAUSED
            elif action == "resume":
                if r.state != PAUSED:
                    raise Conflict("not_paused", f"rollout {r.id} of {service} is {r.state}, not paused")
                r.state = RUNNING
                for name in r.stage_regions():  # a pause does not count against the progress deadline
                    r.regions[name].step_started = time.time()
            elif action == "promote":
                if r.state == GATED:
                    r.state = RUNNING
                else:
                    r.promote_requested = True
            elif action == "abort":
                r.state, r.reason = ABORTED, "aborted by an operator"
            r.record(action, {"by": self.region})
            return True

        stored = await store.mutate(service, change)
        self.wake.set()
        got = await store.get(service)
        assert got is not None
        return stored or got[0]

    async def documents(self, service: str | None = None) -> list[dict[str, Any]]:
        _, store = self._ready()
        out = []
        for name in sorted(self.known):
            if service in (None, name) and (got := await store.get(name)) is not None:
                out.append(describe(got[0]))
        return out

    async def history(self, service: str | None = None) -> list[dict[str, Any]]:
        _, store = self._ready()
        return [describe(r) for r in await store.history(service)]

    def status(self) -> dict[str, Any]:
        return {"state": self.state, "detail": self.detail,
                "pipeline": str(self.pipeline.path) if self.pipeline else None, "lease": self.settings.lease}


def describe(rollout: Rollout) -> dict[str, Any]:
    doc = rollout.to_json()
    doc["weights"] = {r: rollout.weight(r) for r in rollout.regions}
    doc["active"] = rollout.state in ACTIVE
    return doc
