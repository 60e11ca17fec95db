"""One daemon's metering: the ledger, the stream consumer, queries, metrics, status and alerts."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter, OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus

from meshd.alerting import Alert
from meshd.bus import NoAnswer
from meshd.envelope import Envelope
from meshd.healthstate import HealthCheck
from meshd.i18n import Translator
from meshd.transport import Message

from .aggregate import Partial
from .atrest import KEYRING, KeyringProtected, Plaintext
from .config import MeteringConfig, MeterKind
from .events import (
    Policy,
    Reason,
    Rejection,
    TenantCheck,
    UsageEvent,
    batch_msg_id,
    check_message,
    encode,
    event_msg_id,
    iso,
    wire,
)
from .ingest import Ingestor, Outcome
from .ledger import Ledger, LedgerError, LedgerLocked
from .query import BadPeriod, gather, parse_period, partials_from_json, partials_to_json
from .shards import ShardLock, check_layout, merge_partials, shard_path
from .subjects import QUERY_KIND, RECEIPT_KIND, bucket_of, bucket_subject, stream_name, usage_subjects

if TYPE_CHECKING:
    from meshd.daemon import Daemon

LOCKED_RETRY = 30.0
RECENT_OUTCOMES = 10_000
FAILING_AFTER = 3
"""Consecutive failed commits before the ledger counts as failing (health check, alert)."""


class UnknownTenant(ValueError):
    pass


class NotRunning(RuntimeError):
    pass


class Runtime:
    """Created at startup when this daemon meters usage; all state of the plugin for one daemon."""

    def __init__(self, daemon: Daemon, *, worker: bool = False):
        self.daemon = daemon
        self.log = daemon.log.getChild("metering")
        self.settings: MeteringConfig = daemon.plugin_config("metering")
        self.t = Translator(daemon.config.daemon.lang)
        self.state = "starting"
        self.detail = ""
        self.worker = worker
        self.ledger: Ledger | None = None
        """The first shard (the only one with one partition)."""
        self.ledgers: dict[int, Ledger] = {}
        self.ingestor: Ingestor | None = None
        self.ingestors: list[Ingestor] = []
        self._lock = ShardLock(Path(self.ledger_path()).parent)
        self.ledger_ready = anyio.Event()
        self.accepted = 0
        self.duplicates = 0
        self.rejected: Counter[str] = Counter()
        self.failures = 0
        self._policy: Policy | None = None
        self._recent: OrderedDict[int, Outcome] = OrderedDict()
        self._waiters: dict[int, anyio.Event] = {}
        self._firing: set[str] = set()
        self._last_failure = ""

        m = daemon.metrics
        self.m_accepted = m.counter("metering_events_accepted_total", "Usage events counted in the ledger")
        self.m_duplicates = m.counter("metering_events_duplicate_total",
                                      "Usage events seen again after they were counted (not counted again)")
        self.m_rejected = m.counter("metering_events_rejected_total", "Usage events rejected, by reason", ["reason"])
        for reason in Reason:
            self.m_rejected.labels(reason.value)
        self.m_forwarded = m.counter("metering_events_forwarded_total",
                                     "Usage events handed on to their tenant's partition (router, or a wrongly sorted publisher)")
        self.m_lag = m.gauge("metering_consumer_lag", "Usage stream messages not yet delivered to the ledger")
        self.m_bytes = m.gauge("metering_ledger_bytes", "Size of the usage ledger on disk, database and WAL")
        self.m_dedup = m.gauge("metering_ledger_dedup_records", "(source, id) dedup records held by the ledger")
        self.m_encrypted = m.gauge("metering_ledger_encrypted",
                                   "1 when a keyring protects the ledger, 0 when it is plaintext")
        self.m_errors = m.counter("metering_ledger_errors_total", "Batches the ledger could not commit (retried)")
        self.m_batch = m.histogram("metering_batch_seconds", "Validate, commit and acknowledge one batch",
                                   buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.m_queries = m.counter("metering_queries_total", "Federation-wide usage queries, by result", ["result"])

    # ------------------------------------------------------------ policy

    @property
    def region(self) -> str:
        return self.daemon.region

    def policy(self) -> Policy:
        """The validator's view of this region (rebuilt after a reload)."""
        if self._policy is None:
            self._policy = Policy(meters=self.settings.kinds(), tenant_check=self._tenant_check(),
                                  future_skew=self.settings.future_skew, max_age=self.settings.max_event_age)
        return self._policy

    def _tenant_check(self) -> TenantCheck:
        directory = self.daemon.config.tenants
        here = self.daemon.regions[self.region].jurisdiction
        # Read live, not copied: the tenant registry adds tenants at run time.
        known: Any = directory.tenants if directory is not None else {}

        def check(tenant: str) -> tuple[Reason, str] | None:
            found = known.get(tenant)
            if found is None:
                return Reason.UNKNOWN_TENANT, f"tenant {tenant!r} is not in the tenant directory"
            if found.residency == here:
                return None
            return Reason.NOT_RESIDENT, f"tenant {tenant!r} resides in {found.residency}; {self.region} is in {here}"

        return check

    def reload(self) -> None:
        old = self.settings
        self.settings = self.daemon.plugin_config("metering")
        self._policy = None
        for key in ("stream", "ledger_path", "fetch_batch", "ack_wait", "max_ack_pending", "partitions", "ingest"):
            if getattr(old, key) != getattr(self.settings, key):
                self.log.warning("metering.%s changed; it takes effect after a restart", key)

    # ------------------------------------------------------------ the ledger shards

    def ledger_path(self) -> Any:
        """The one ledger's file with one partition; with several, the name each shard's file derives from."""
        return self.settings.ledger_path or self.daemon.state_dir / "metering" / "ledger.sqlite3"

    def shard_partitions(self) -> list[int]:
        """The shards this process opens: a worker its own, the daemon all of them (it answers queries)."""
        return self.settings.local_partitions() if self.worker else list(range(self.settings.partitions))

    async def open_ledger(self) -> None:
        """Open the ledger shards with the keyring if there is one; wait (logging once) while they cannot be opened."""
        logged = ""
        base = Path(self.ledger_path())
        partitions = self.settings.partitions
        while True:
            keyring = await anyio.to_thread.run_sync(self.daemon.hooks.keyring, self.daemon, "metering")
            ledgers: dict[int, Ledger] = {}
            if keyring is None and self.settings.require_encryption:
                problem = "no keyring for purpose 'metering' and metering.require_encryption is set"
            else:
                at_rest = KeyringProtected(keyring) if keyring is not None else Plaintext()
                try:
                    await anyio.to_thread.run_sync(self._lock.acquire)
                    await anyio.to_thread.run_sync(check_layout, base, partitions, str(self.daemon.config.path))
                    for k in self.shard_partitions():
                        ledger = Ledger(shard_path(base, k, partitions), at_rest, region=self.region,
                                        retention=self.settings.dedup_retention)
                        await anyio.to_thread.run_sync(ledger.open)
                        ledgers[k] = ledger
                    problem = ""
                except LedgerLocked as exc:
                    problem = str(exc)
                except (LedgerError, sqlite3.Error, OSError) as exc:
                    problem = str(exc) if isinstance(exc, LedgerError) else f"{base}: {exc}"
            if not problem:
                break
            for ledger in ledgers.values():
                ledger.close()
            self._lock.release()
            self.state, self.detail = "locked", problem
            if problem != logged:
                self.log.error("metering ledger unavailable: %s; usage waits in the stream (retrying every %.0fs)",
                               problem, LOCKED_RETRY)
                logged = problem
            await anyio.sleep(LOCKED_RETRY)
        self.m_encrypted.set(1 if keyring is not None else 0)
        first = next(iter(ledgers.values()), None)
        register = getattr(keyring, "register_rewrap_source", None)
        if register is not None and first is not None and first.at_rest.mode == KEYRING and not self.worker:
            # `meshd keys rewrap` then moves the ledger's rows to the latest key version too.
            register("metering-ledger", lambda ring: sum(lg.rewrap(ring.rewrap) for lg in ledgers.values()))
        if keyring is None:
            self.log.warning("no keyring for purpose 'metering' (is the keys plugin installed and enabled?): "
                             "the ledger %s stores tenant ids and values in PLAINTEXT", base)
        for ledger in ledgers.values():
            if ledger.migrated:
                self.log.info("ledger %s encrypted with the region keyring: %d rows rewritten", ledger.path,
                              ledger.migrated)
        self.ledgers = ledgers
        self.ledger = first
        self._update_ledger_gauges()
        self.ledger_ready.set()

    def _shard_stats(self) -> list[dict[str, Any]]:
        local = set(self.settings.local_partitions())
        out = []
        for k, ledger in self.ledgers.items():
            if k not in local:
                try:
                    ledger.reload_counters()  # a worker process writes this one
                except (LedgerError, sqlite3.Error):
                    pass  # shown as last read
            out.append({"partition": k, "ingested_here": k in local, **ledger.stats()})
        return out

    def merged_stats(self) -> dict[str, Any] | None:
        """Every shard's figures added up (the region's ledger as one), and each shard's own."""
        if not self.ledgers:
            return None
        shards = self._shard_stats()
        marks = [s["watermark"] for s in shards if s["watermark"]]
        merged: dict[str, Any] = {
            "path": str(self.ledger_path()), "at_rest": shards[0]["at_rest"],
            "partitions": self.settings.partitions, "watermark": max(marks) if marks else None}
        for key in ("bytes", "accepted_total", "duplicates_total", "dedup_records"):
            merged[key] = sum(s[key] for s in shards)
        if self.settings.partitions > 1:
            merged["shards"] = shards
        return merged

    def _update_ledger_gauges(self) -> None:
        if self.ledgers:
            stats = [ledger.stats() for ledger in self.ledgers.values()]
            self.m_bytes.set(sum(s["bytes"] for s in stats))
            self.m_dedup.set(sum(s["dedup_records"] for s in stats))

    async def close(self) -> None:
        for ingestor in self.ingestors:
            await ingestor.stop()
        for ledger in self.ledgers.values():
            # Waits for a commit in progress; its acks are then lost and the batch comes back as duplicates.
            await anyio.to_thread.run_sync(ledger.close)
        self._lock.release()

    # ------------------------------------------------------------ services

    async def run_ingest(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()  # readiness does not wait for JetStream; /status shows the consumer
        if self.ledger is None:
            await self.open_ledger()
        local = self.settings.local_partitions()
        nc = self.daemon.transport.nc  # type: ignore[attr-defined]

        def ingestor(ledger: Ledger | None, partition: int) -> Ingestor:
            return Ingestor(nc=nc, federation=self.daemon.federation, region=self.region, settings=self.settings,
                            ledger=ledger, policy=self.policy, on_outcomes=self._on_outcomes,
                            on_failure=self._on_failure, log=self.log, partition=partition)

        self.ingestors = [ingestor(self.ledgers[k], k) for k in local]
        if self.settings.partitions > 1 and 0 in local:
            # The router goes with partition 0, so that exactly one process of the region runs it.
            self.ingestors.append(ingestor(None, 0))
        self.ingestor = self.ingestors[0] if self.ingestors else None
        if not self.ingestors:
            self.state, self.detail = "running", "ingestion by `meshd ingest` workers (metering.ingest: none)"
            return
        self.state, self.detail = "running", ""
        async with anyio.create_task_group() as tg:
            for one in self.ingestors:
                tg.start_soon(one.run)

    def consuming(self) -> bool:
        """Every consumer this process runs is bound to the stream."""
        return bool(self.ingestors) and all(i.running for i in self.ingestors)

    async def run_prune(self) -> None:
        await self.ledger_ready.wait()
        local = [self.ledgers[k] for k in self.settings.local_partitions() if k in self.ledgers]
        if not local:
            return  # the shards' writers prune them
        while True:
            # A sweep reads the whole dedup table: once per interval, remembered across restarts.
            due = min(ledger.pruned_at for ledger in local) + self.settings.prune_interval
            await anyio.sleep(max(0.0, due - time.time()))
            removed = 0
            for ledger in local:
                try:
                    removed += await anyio.to_thread.run_sync(ledger.prune)
                except LedgerError:
                    if any(i.stopping for i in self.ingestors):
                        return  # the ledger closed for shutdown
                    raise
            if removed:
                self.log.info("forgot %d dedup records older than %.0f days", removed,
                              self.settings.dedup_retention / 86400)
            self._update_ledger_gauges()

    async def run_alerts(self) -> None:
        seen: Counter[str] = Counter()
        quiet_since = time.monotonic()
        while True:
            await anyio.sleep(self.settings.alert_interval)
            new = self.rejected - seen
            seen = Counter(self.rejected)
            now = time.monotonic()
            if new:
                quiet_since = now
                reasons = ", ".join(f"{reason}: {n}" for reason, n in new.most_common())
                await self._alert("MeteringRejectedEvents", "warning", "rejected",
                                  count=sum(new.values()), reasons=reasons,
                                  window=self.t.duration(self.settings.alert_interval))
            elif "MeteringRejectedEvents" in self._firing and now - quiet_since >= self.settings.alert_resolve_after:
                await self._alert("MeteringRejectedEvents", "warning", "rejected", resolved=True)

    async def _alert(self, name: str, severity: str, key: str, *, resolved: bool = False, **values: Any) -> None:
        labels = {"alertname": name, "severity": severity, "region": self.region}
        if resolved:
            self._firing.discard(name)
            summary = self.t(f"metering.alert.{key}.resolved", region=self.region)
            annotations = {"summary": summary, "description": summary}
        else:
            self._firing.add(name)
            annotations = {"summary": self.t(f"metering.alert.{key}.summary", region=self.region, **values),
                           "description": self.t(f"metering.alert.{key}.description", region=self.region, **values)}
        await self.daemon.hooks.alert(self.daemon, Alert(labels=labels, annotations=annotations,
                                                         status="resolved" if resolved else "firing"))

    # ------------------------------------------------------------ batch results

    def count_rejections(self, rejected: list[Rejection]) -> None:
        for r in rejected:
            self.rejected[r.reason.value] += 1
            self.m_rejected.labels(r.reason.value).inc()

    async def _on_outcomes(self, outcomes: list[Outcome], seconds: float) -> None:
        self.m_batch.observe(seconds)
        for o in outcomes:
            self.accepted += o.accepted
            self.duplicates += o.duplicates
            self.m_accepted.inc(o.accepted)
            self.m_duplicates.inc(o.duplicates)
            if o.forwarded:
                self.m_forwarded.inc(o.forwarded)
            self.count_rejections(o.rejected)
            self._recent[o.stream_seq] = o
            waiter = self._waiters.pop(o.stream_seq, None)
            if waiter is not None:
                waiter.set()
        while len(self._recent) > RECENT_OUTCOMES:
            self._recent.popitem(last=False)
        if self.ingestors:
            self.m_lag.set(sum(i.lag for i in self.ingestors))
        self._update_ledger_gauges()
        if self.failures:
            self.log.info("ledger commits again after %d failed attempt(s)", self.failures)
            self.failures, self._last_failure = 0, ""
            if self.state == "failing":
                self.state, self.detail = "running", ""
            if "MeteringLedgerFailing" in self._firing:
                await self._alert("MeteringLedgerFailing", "critical", "failing", resolved=True)
        for o in outcomes:
            if o.receipt:
                await self.daemon.bus.publish(RECEIPT_KIND, "usage.receipt", o.to_json(), target=o.receipt)

    async def _on_failure(self, exc: Exception, failures: int) -> None:
        self.failures = failures
        self.m_errors.inc()
        text = f"{type(exc).__name__}: {exc}"
        if text != self._last_failure:
            self.log.error("ledger commit failed (%s); the batch goes back to the stream and is retried", text)
            self._last_failure = text
        if failures >= FAILING_AFTER and self.state == "running":
            self.state, self.detail = "failing", text
            await self._alert("MeteringLedgerFailing", "critical", "failing", error=text)

    async def wait_outcome(self, seq: int, timeout: float) -> Outcome | None:
        """The outcome of stream message ``seq`` once committed; None if not within ``timeout``."""
        if seq in self._recent:
            return self._recent[seq]
        event = self._waiters.setdefault(seq, anyio.Event())
        with anyio.move_on_after(timeout):
            await event.wait()
        self._waiters.pop(seq, None)
        return self._recent.get(seq)

    # ------------------------------------------------------------ recording (local route)

    async def record(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """Validate events, store the valid ones in this region's stream and wait for their commit.

        With several partitions the events go to their tenants' bucket subjects, one message per
        bucket; the commit is waited for only where this daemon ingests (a worker's is not seen here).
        """
        if self.ledger is None or (self.ingestors and not self.consuming()):
            return 503, {"error": f"metering is not consuming ({self.state}{': ' + self.detail if self.detail else ''})"}
        events, rejected = check_message(body, time.time(), self.policy())
        self.count_rejections(rejected)
        result: dict[str, Any] = {"rejected": [r.to_json() for r in rejected], "stored": 0}
        if not events:
            return (400 if rejected else 200), result
        groups: dict[int | None, list[UsageEvent]] = {}
        for e in events:
            groups.setdefault(bucket_of(e.tenant) if self.settings.partitions > 1 else None, []).append(e)
        local = set(self.settings.local_partitions())
        waits: list[int] = []
        for bucket, group in groups.items():
            if len(group) == 1:
                msg_id = event_msg_id(group[0].source, group[0].id)
            else:
                msg_id = batch_msg_id((e.source, e.id) for e in group)
            subject = None if bucket is None else bucket_subject(self.daemon.federation, self.region, bucket)
            try:
                ack = await self._publish(encode([wire(e) for e in group]), msg_id, subject)
            except Exception as exc:
                return 503, {**result, "error": f"the usage stream did not take the events: {type(exc).__name__}: {exc}"}
            result["stored"] += len(group)
            result.setdefault("stream_seq", ack.seq)
            result["duplicate_message"] = result.get("duplicate_message", False) or bool(ack.duplicate)
            if not ack.duplicate and (bucket is None or bucket % self.settings.partitions in local):
                waits.append(ack.seq)
        if not waits:
            return 200, result  # already stored (and counted once), or counted by a worker
        outcomes = [await self.wait_outcome(seq, self.settings.record_wait) for seq in waits]
        result["committed"] = all(o is not None for o in outcomes)
        for outcome in outcomes:
            if outcome is not None:
                result["accepted"] = result.get("accepted", 0) + outcome.accepted
                result["duplicates"] = result.get("duplicates", 0) + outcome.duplicates
                result["rejected"] += [r.to_json() for r in outcome.rejected]
        return 200, result

    async def _publish(self, data: bytes, msg_id: str, subject: str | None) -> Any:
        """Store one message in this region's stream with a JetStream ack; the PubAck."""
        from .subjects import MSG_ID_HEADER, usage_subject

        js = self.daemon.transport.nc.jetstream(timeout=5.0)  # type: ignore[attr-defined]
        return await js.publish(subject or usage_subject(self.daemon.federation, self.region), data,
                                headers={MSG_ID_HEADER: msg_id})

    # ------------------------------------------------------------ queries

    async def local_totals(self, tenant: str, start: float, end: float) -> dict[str, Partial]:
        if self.ledger is None and self.state == "disabled":
            return {}  # this region meters nothing, so it holds nothing
        if self.ledger is None or self.worker:
            raise NotRunning(f"ledger {self.state}{': ' + self.detail if self.detail else ''}")
        ledgers = list(self.ledgers.values())

        def read() -> dict[str, Partial]:
            # A tenant's rows are in one shard; every shard is read all the same, so a shard
            # holding rows it should not (a layout bug) shows up as a total, not as a loss.
            return merge_partials(ledger.totals(tenant, start, end) for ledger in ledgers)

        return await anyio.to_thread.run_sync(read)

    async def on_query(self, envelope: Envelope, message: Message) -> None:
        body = envelope.body
        try:
            tenant, start, end = str(body["tenant"]), float(body["start"]), float(body["end"])
            partials = await self.local_totals(tenant, start, end)
        except (KeyError, TypeError, ValueError) as exc:
            await self.daemon.bus.reply(message, "usage.totals", {"ok": False, "error": f"bad request: {exc}"})
            return
        except (NotRunning, LedgerError, sqlite3.Error) as exc:
            await self.daemon.bus.reply(message, "usage.totals", {"ok": False, "error": str(exc)})
            return
        await self.daemon.bus.reply(message, "usage.totals", {
            "ok": True, "region": self.region,
            "meters": partials_to_json(partials, self.settings.kinds(), self.settings.query_max_members)})

    async def _ask(self, region: str, tenant: str, start: float, end: float
                   ) -> tuple[dict[str, Partial], dict[str, MeterKind]]:
        if region == self.region:
            return await self.local_totals(tenant, start, end), {}
        timeout = self.settings.query_timeout
        try:
            body = await self.daemon.bus.ask(QUERY_KIND, "usage.query",
                                             {"tenant": tenant, "start": start, "end": end},
                                             target=region, timeout=timeout)
        except NoAnswer as exc:
            raise NotRunning(str(exc)) from None
        return partials_from_json(body.get("meters") or {})

    async def events_by_region(self, tenant: str, start: float, end: float, regions: list[str]
                               ) -> dict[str, int | None]:
        """``tenant``'s usage events per region over [start, end) (epoch s); None where a region could not say.

        Where a tenant's usage was metered is where it was served: the sla
        plugin weighs a tenant's SLI by these counts.
        """
        out: dict[str, int | None] = {}

        async def one(region: str) -> None:
            try:
                partials, _ = await self._ask(region, tenant, start, end)
            except (NotRunning, LedgerError, sqlite3.Error):
                out[region] = None
                return
            out[region] = sum(p.aggregate.events for p in partials.values())

        async with anyio.create_task_group() as tg:
            for region in regions:
                tg.start_soon(one, region)
        return out

    async def query(self, tenant: str, period: str) -> dict[str, Any]:
        """Totals of ``tenant`` over ``period`` from every region of its residency.

        Raises :class:`~.query.BadPeriod` or :class:`UnknownTenant`.
        """
        start_dt, end_dt = parse_period(period)
        directory = self.daemon.config.tenants
        if directory is None or tenant not in directory.tenants:
            raise UnknownTenant(f"tenant {tenant!r} is not in the tenant directory")
        regions = directory.residency_regions(tenant, self.daemon.config.region_map)
        start, end = start_dt.timestamp(), end_dt.timestamp()

        async def ask(region: str) -> tuple[dict[str, Partial], dict[str, MeterKind]]:
            return await self._ask(region, tenant, start, end)

        result = await gather(regions, ask, self.settings.kinds())
        self.m_queries.labels("complete" if result["complete"] else "incomplete").inc()
        return {"tenant": tenant, "period": period, "start": iso(start), "end": iso(end),
                "asked_by": self.region, **result}

    # ------------------------------------------------------------ observability

    def status(self) -> dict[str, Any]:
        ingestor = self.ingestor
        return {
            "state": self.state,
            "detail": self.detail,
            "meters": {name: kind.value for name, kind in self.settings.kinds().items()},
            "stream": stream_name(self.daemon.federation, self.region),
            "subjects": usage_subjects(self.daemon.federation, self.region),
            "consumer": {"running": self.consuming(), "lag": sum(i.lag for i in self.ingestors) if ingestor else None,
                         "last_commit_at": max((i.last_commit or 0 for i in self.ingestors), default=0) or None,
                         "partitions": self.settings.partitions, "ingested_here": self.settings.local_partitions()},
            "events": {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": dict(self.rejected)},
            "ledger": self.merged_stats(),
            "at_rest": self.ledger.at_rest.mode if self.ledger is not None else None,
        }

    def health(self) -> HealthCheck:
        ok = self.state in ("starting", "running")
        return HealthCheck("metering", ok, self.detail or self.state)


__all__ = ["BadPeriod", "NotRunning", "Runtime", "UnknownTenant"]
