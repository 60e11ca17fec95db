"""The delivery worker: outbox rows to receivers, once for the whole federation, never lost.

One task per (receiver, group) works through that group's rows in order.
For a candidate row it reads the notification log (:mod:`.nflog`) and

* skips it when the receiver was already told (by any daemon),
* stands by while another daemon's unfinished claim is alive, and takes
  that claim over (delivering what it claimed) once its renewals stop,
* otherwise claims the next sequence number and delivers.

Delivering means one attempt per receiver URL through ``meshd_notify``,
each under a hard deadline, retried with exponential backoff and jitter on
timeouts, connection errors, 5xx and 429 (Retry-After honoured), and given
up on other 4xx, which raises NotifierBroken. The claim is renewed while
delivery goes on, then marked done. Per-URL progress is written to the
outbox after every attempt, so a restart resumes without resending what a
receiver already accepted (a crash between acceptance and that write can
still repeat one message: at least once, never lost).

When the KV log cannot be reached for ``fence_grace`` (plus the region's
rank times ``stagger``) the row is delivered anyway, unless a peer
announced over the bus that it delivered the same thing.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from meshd.alerting import Alert, DeliveryResult, Notification

from .compose import compose
from .nflog import Conflict, FenceUnavailable, LogEntry, effective, needs_update
from .outbox import PENDING, Row
from .retry import RetryPolicy
from .routes import DEFAULT_REPEAT_INTERVAL, Receiver
from .senders import failure_reason
from .targets import Target

if TYPE_CHECKING:
    from .runtime import AlertsRuntime

NOTIFIER_BROKEN = "NotifierBroken"


@dataclass
class _StaleWatch:
    """Notices a claim whose revision stopped changing: its sender stopped renewing it."""

    revision: int = -1
    since: float = 0.0

    def stale(self, revision: int, lease: float, mono: float) -> bool:
        if revision != self.revision:
            self.revision, self.since = revision, mono
            return False
        return mono - self.since >= lease


class Delivery:
    """The outbox worker of one daemon."""

    def __init__(self, rt: AlertsRuntime, rng: random.Random | None = None):
        self.rt = rt
        self.log = rt.log.getChild("delivery")
        self.rng = rng or random.Random()
        self._tg: TaskGroup | None = None
        self._running: set[str] = set()
        self._wakeups: dict[str, anyio.Event] = {}
        self._announced: dict[str, tuple[frozenset[str], frozenset[str], float]] = {}
        self._failing_since: dict[str, float] = {}
        self._broken: dict[str, str] = {}
        self._fence_ok = True
        self._limiter = anyio.CapacityLimiter(rt.settings.delivery.concurrency)
        self._added = 0
        """Rows this daemon put in the outbox (only it writes there): counted when each is handed over."""
        self._empty = False
        """True once housekeeping found no pending row and none was added since: it then skips its query."""

    # ------------------------------------------------------------ policy from config

    @property
    def policy(self) -> RetryPolicy:
        d = self.rt.settings.delivery
        return RetryPolicy(d.backoff_initial, d.backoff_max, d.jitter, d.retry_after_max, d.rate_limited_min)

    # ------------------------------------------------------------ running

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The service: resume pending rows, then keep the gauges fresh and restart idle keys."""
        self._running.clear()  # tasks of a previous run of this service died with it
        self._empty = False
        async with anyio.create_task_group() as tg:
            self._tg = tg
            for key in await self.rt.outbox.run(self.rt.outbox.sync.pending_keys):
                self.kick(key)
            task_status.started()
            last_gc = 0.0
            while True:
                await anyio.sleep(1.0)
                try:
                    await self._housekeeping()
                    if time.monotonic() - last_gc > 3600:
                        last_gc = time.monotonic()
                        keep = self.rt.settings.delivery.keep
                        await self.rt.outbox.run(self.rt.outbox.sync.gc, time.time() - keep)
                except Exception as exc:  # never let bookkeeping stop delivery
                    self.rt.metrics.errors.labels("housekeeping").inc()
                    self.log.error("outbox housekeeping failed: %s: %s", type(exc).__name__, exc)

    async def _housekeeping(self) -> None:
        if self._empty:
            return  # an idle daemon's outbox stays empty: no thread hop and query every second for it
        added = self._added
        depth, oldest = await self.rt.outbox.run(self.rt.outbox.sync.stats)
        self.rt.metrics.outbox_depth.set(depth)
        self.rt.metrics.outbox_oldest.set(max(0.0, time.time() - oldest) if oldest else 0.0)
        self._empty = depth == 0 and self._added == added
        if depth:
            for key in await self.rt.outbox.run(self.rt.outbox.sync.pending_keys):
                self.kick(key)  # a key task that ended on an error starts again

    def kick(self, key: str) -> None:
        """Make sure a task works on ``key``'s rows (called after every new row)."""
        self._row_added()
        self.wake(key)
        if key in self._running or self._tg is None:
            return
        self._running.add(key)
        self._tg.start_soon(self._work_key, key, name=f"alerts-key-{key[:8]}")

    def _row_added(self) -> None:
        self._added += 1
        self._empty = False

    def wake(self, key: str) -> None:
        event = self._wakeups.pop(key, None)
        if event is not None:
            event.set()

    async def _nap(self, key: str, seconds: float) -> None:
        """Sleep up to ``seconds``, less if a peer's notice or a new row concerns ``key``."""
        event = self._wakeups.setdefault(key, anyio.Event())
        with anyio.move_on_after(seconds):
            await event.wait()

    async def _work_key(self, key: str) -> None:
        try:
            while True:
                row = await self.rt.outbox.run(self.rt.outbox.sync.head, key)
                if row is None:
                    return
                await self._process(row)
        except Exception as exc:
            self.rt.metrics.errors.labels("delivery").inc()
            self.log.error("delivery of group %s stopped on %s: %s; retrying shortly", key[:12],
                           type(exc).__name__, exc, exc_info=exc)
        finally:
            self._running.discard(key)

    # ------------------------------------------------------------ peers' notices (bus)

    def announced(self, key: str, firing: list[str], resolved: list[str]) -> None:
        """A peer delivered (firing, resolved) for ``key``."""
        self._announced[key] = (frozenset(firing), frozenset(resolved), time.monotonic())
        self.wake(key)
        if len(self._announced) > 10000:
            oldest = sorted(self._announced.items(), key=lambda kv: kv[1][2])[:5000]
            for k, _ in oldest:
                self._announced.pop(k, None)

    def _peer_covered(self, key: str, firing: list[str], resolved: list[str], repeat: float) -> bool:
        got = self._announced.get(key)
        if got is None or time.monotonic() - got[2] > repeat:
            return False
        return set(firing) <= got[0] and set(resolved) <= got[1] and (bool(firing) or bool(resolved))

    # ------------------------------------------------------------ one row

    def _receiver(self, name: str) -> Receiver | None:
        return self.rt.tree.receivers.get(name)

    def _repeat(self, content: Mapping[str, Any]) -> float:
        route = self.rt.tree.route_by_id(str(content.get("route", "")))
        return route.repeat_interval if route else DEFAULT_REPEAT_INTERVAL

    def _fence(self, ok: bool, detail: str = "") -> None:
        if ok != self._fence_ok:
            self._fence_ok = ok
            self.rt.metrics.fence.set(1 if ok else 0)
            if ok:
                self.log.info("notification log (KV %s) reachable again", self.rt.settings.dedup.bucket)
            else:
                self.log.warning("notification log (KV %s) unreachable: %s; notifications wait up to %.0fs, "
                                 "then go out unfenced", self.rt.settings.dedup.bucket, detail,
                                 self.rt.settings.dedup.fence_grace)

    async def _finish(self, row: Row, outcome: str, error: str | None = None) -> None:
        await self.rt.outbox.run(self.rt.outbox.sync.finish, row, outcome, error)

    async def _still_ours(self, row: Row) -> bool:
        """May this daemon deliver ``row``, which it claimed (perhaps before a restart)?

        No when another daemon took the claim over and delivered it, or is
        delivering it; yes when the claim is still ours, or its new holder
        went silent too (then we take it back), or the log cannot be read
        (a duplicate beats a miss).
        """
        watch = _StaleWatch()
        while True:
            try:
                entry, revision = await self.rt.nflog.read(row.key)
            except FenceUnavailable:
                return True
            if entry is None or entry.seq < (row.claim_seq or 0):
                return True
            if entry.seq == row.claim_seq and entry.by == self.rt.region:
                return True
            if entry.done or entry.seq > (row.claim_seq or 0):
                self.rt.metrics.superseded.labels(row.receiver).inc()
                await self._finish(row, "superseded")
                return False
            if watch.stale(revision, self.rt.settings.dedup.lease, time.monotonic()):
                try:
                    await self.rt.nflog.write(row.key, replace(entry, by=self.rt.region, renewed=time.time()),
                                              revision)
                    return True
                except (Conflict, FenceUnavailable):
                    continue
            await self._nap(row.key, self.rt.settings.dedup.poll)

    async def _process(self, row: Row) -> None:
        if row.claim_seq is not None:
            if await self._still_ours(row):
                await self._deliver(row, fenced=True)
            return
        dedup = self.rt.settings.dedup
        watch = _StaleWatch()
        unfenced_since: float | None = None
        while True:
            receiver = self._receiver(row.receiver)
            if receiver is None:
                self.log.warning("receiver %s is no longer configured; dropping its notification", row.receiver)
                await self._finish(row, "dropped", "receiver no longer configured")
                return
            if await self.rt.outbox.run(self.rt.outbox.sync.newer_candidate, row.key, row.id):
                self.rt.metrics.superseded.labels(row.receiver).inc()
                await self._finish(row, "superseded")
                return
            try:
                entry, revision = await self.rt.nflog.read(row.key)
                self._fence(True)
                unfenced_since = None
                if await self._merge_unfenced(row, entry, revision):
                    continue  # the log changed: read it again
            except FenceUnavailable as exc:
                self._fence(False, str(exc))
                unfenced_since = time.monotonic() if unfenced_since is None else unfenced_since
                wait = dedup.fence_grace + self.rt.rank * dedup.stagger
                if time.monotonic() - unfenced_since >= wait:
                    await self._deliver_unfenced(row, receiver)
                    return
                await self._nap(row.key, dedup.poll)
                continue

            if entry is not None and not entry.done:
                if entry.by == self.rt.region:
                    mine = await self.rt.outbox.run(self.rt.outbox.sync.claimed, row.key, entry.seq)
                    if mine is not None and mine.state != PENDING:
                        await self._mark_done(row.key, entry.seq)  # delivered; only the mark was lost
                        continue
                    if mine is not None:
                        await self._process(mine)
                        continue
                    # Our own claim with no row (the outbox was lost): deliver it again.
                elif not watch.stale(revision, dedup.lease, time.monotonic()):
                    await self._nap(row.key, dedup.poll)
                    continue
                await self._take_over(row, entry, revision)
                continue

            firing, resolved = effective(row.content, entry)
            if not needs_update(entry, firing, resolved, send_resolved=receiver.send_resolved,
                                repeat_interval=self._repeat(row.content), now=time.time()):
                if entry is not None:
                    self.rt.notified(row.key, entry.at)
                self.rt.metrics.deduplicated.labels(row.receiver).inc()
                await self._finish(row, "skipped")
                return
            silent = not firing and not receiver.send_resolved
            content = {**row.content, "firing": firing, "resolved": resolved}
            now = time.time()
            claim = LogEntry(seq=(entry.seq + 1 if entry else 1), firing=tuple(firing), resolved=tuple(resolved),
                             at=now, by=self.rt.region, done=silent, silent=silent, content=content, renewed=now)
            try:
                await self.rt.nflog.write(row.key, claim, revision)
            except Conflict:
                continue  # someone else wrote first: read what they claimed
            except FenceUnavailable as exc:
                self._fence(False, str(exc))
                await self._nap(row.key, dedup.poll)
                continue
            row.claim_seq, row.content = claim.seq, content
            self.rt.notified(row.key, claim.at)
            if silent:
                await self._finish(row, "silent")
                return
            await self.rt.outbox.run(self.rt.outbox.sync.save, row)
            await self._deliver(row, fenced=True)
            return

    async def _merge_unfenced(self, row: Row, entry: LogEntry | None, revision: int) -> bool:
        """Write into the log what this daemon told the receiver while the log was unreachable.

        Without it the log would not know the receiver heard an alert firing,
        and the resolve that follows would be skipped as news to no one. A
        log entry newer than our record supersedes it. True when the log was
        written (or lost a race), so the caller reads it again.
        """
        if entry is not None and not entry.done:
            return False  # wait until the claim in progress is over
        if not self.rt.outbox.sync.may_have_unfenced(row.key):
            return False  # nothing to merge, known without a worker thread
        told = await self.rt.outbox.run(self.rt.outbox.sync.unfenced_told, row.key)
        if told is None:
            return False
        firing, resolved, at = told
        if entry is None or at > entry.at:
            merged = LogEntry(seq=(entry.seq + 1 if entry else 1), firing=tuple(firing), resolved=tuple(resolved),
                              at=at, by=self.rt.region, done=True, renewed=time.time())
            try:
                await self.rt.nflog.write(row.key, merged, revision)
            except Conflict:
                return True
            except FenceUnavailable as exc:
                self._fence(False, str(exc))
                return False
            self.rt.metrics.unfenced_merged.labels(row.receiver).inc()
            self.log.info("notification log of group %s for %s now holds what was sent while it was unreachable",
                          row.key[:12], row.receiver)
        await self.rt.outbox.run(self.rt.outbox.sync.forget_unfenced, row.key, at)
        return entry is None or at > entry.at

    async def _take_over(self, row: Row, entry: LogEntry, revision: int) -> None:
        """Claim ``entry`` (its sender went silent) and deliver what it claimed."""
        taken = replace(entry, by=self.rt.region, renewed=time.time())
        try:
            await self.rt.nflog.write(row.key, taken, revision)
        except (Conflict, FenceUnavailable):
            return  # the caller re-reads
        self.rt.metrics.takeovers.labels(row.receiver).inc()
        self.log.warning("took over notification %d of group %s for %s from %s (no renewal for %.0fs)",
                         entry.seq, row.key[:12], row.receiver, entry.by, self.rt.settings.dedup.lease)
        adopted = await self.rt.outbox.run(self.rt.outbox.sync.add, key=row.key, receiver=row.receiver,
                                           group_key=row.group_key, content=entry.content, claim_seq=entry.seq,
                                           origin="takeover")
        self._row_added()
        await self._deliver(adopted, fenced=True)

    async def _mark_done(self, key: str, seq: int) -> None:
        for _ in range(5):
            try:
                entry, revision = await self.rt.nflog.read(key)
                if entry is None or entry.seq != seq or entry.by != self.rt.region or entry.done:
                    return
                await self.rt.nflog.write(key, replace(entry, done=True, renewed=time.time()), revision)
                return
            except Conflict:
                continue
            except FenceUnavailable:
                return  # a standby will see the claim go stale and re-check it

    async def _renew(self, row: Row, lost: anyio.Event) -> None:
        """Keep our claim's revision moving while we deliver; notice if someone took it over."""
        dedup = self.rt.settings.dedup
        while True:
            await anyio.sleep(max(0.05, dedup.lease / 3))
            try:
                entry, revision = await self.rt.nflog.read(row.key)
                if entry is None:
                    continue
                if entry.by != self.rt.region or entry.seq != row.claim_seq:
                    self.log.warning("notification %s of group %s was taken over by %s; stopping",
                                     row.claim_seq, row.key[:12], entry.by)
                    lost.set()
                    return
                await self.rt.nflog.write(row.key, replace(entry, renewed=time.time()), revision)
            except (Conflict, FenceUnavailable):
                continue  # keep delivering: a duplicate beats a miss

    # ------------------------------------------------------------ delivering

    async def _deliver_unfenced(self, row: Row, receiver: Receiver) -> None:
        firing, resolved = effective(row.content, None)
        resolved += [fp for fp in row.content.get("silenced", {}) if fp not in resolved]
        repeat = self._repeat(row.content)
        if not (firing or (resolved and receiver.send_resolved)) or \
                self._peer_covered(row.key, firing, resolved, repeat):
            self.rt.metrics.deduplicated.labels(row.receiver).inc()
            await self._finish(row, "skipped")
            return
        self.rt.metrics.unfenced.labels(row.receiver).inc()
        self.log.warning("sending group %s to %s without the notification log (unreachable)",
                         row.key[:12], row.receiver)
        row.content = {**row.content, "firing": firing, "resolved": resolved}
        await self.rt.outbox.run(self.rt.outbox.sync.save, row)
        await self._deliver(row, fenced=False)

    async def _deliver(self, row: Row, *, fenced: bool) -> None:
        receiver = self._receiver(row.receiver)
        if receiver is None:
            await self._finish(row, "dropped", "receiver no longer configured")
            return
        targets, problem = self.rt.targets(row.receiver)
        if problem:
            self.log.error("receiver %s cannot be used: %s", row.receiver, problem)
            self.rt.metrics.dropped.labels(row.receiver, "invalid_url").inc()
            await self._broken_receiver(row.receiver, problem)
            # Not marked done: the problem may be ours alone (a secret we cannot decrypt), so
            # the claim goes stale and a peer takes it over.
            await self._finish(row, "failed", problem)
            return
        for target in targets:
            row.targets.setdefault(str(target.index), {"state": PENDING, "attempts": 0})
        lost = anyio.Event()
        async with anyio.create_task_group() as tg:
            if fenced:
                tg.start_soon(self._renew, row, lost)
            if not targets:
                self._log_only(row, receiver)
                row.targets["log"] = {"state": "sent", "attempts": 1}
            for target in targets:
                if row.targets[str(target.index)]["state"] == PENDING and not lost.is_set():
                    await self._send(row, receiver, target, lost)
            tg.cancel_scope.cancel()
        states = [t["state"] for t in row.targets.values()]
        if lost.is_set() and PENDING in states:
            self.rt.metrics.superseded.labels(row.receiver).inc()
            await self._finish(row, "superseded")
            return
        outcome = "sent" if all(s == "sent" for s in states) else "failed"
        if fenced:
            # Marked done before the row leaves the outbox: a crash in between then costs a restart
            # that finds the claim done, not a peer resending what the receiver already has.
            await self._mark_done(row.key, row.claim_seq or 0)
        elif "sent" in states:
            await self.rt.outbox.run(self.rt.outbox.sync.record_unfenced, row.key, list(row.content.get("firing", [])),
                                     list(row.content.get("resolved", [])), time.time())
        await self._finish(row, outcome)
        self.wake(row.key)
        await self.rt.announce(row.key, row.receiver, outcome == "sent", list(row.content.get("firing", [])),
                               list(row.content.get("resolved", [])))

    def _log_only(self, row: Row, receiver: Receiver) -> None:
        c = row.content
        names = sorted({a["labels"].get("alertname", "?") for a in c.get("alerts", {}).values()})
        self.log.info("notification for %s (no URLs, logged only): %s firing, %s resolved: %s",
                      receiver.name, len(c.get("firing", [])), len(c.get("resolved", [])), ", ".join(names))

    def notification(self, row: Row, receiver: Receiver, target: Target) -> Notification:
        return compose(row.content, key=row.key, receiver=receiver, target=target,
                       t=self.rt.translator(receiver.lang), region=self.rt.region, federation=self.rt.federation,
                       repeat_interval=self._repeat(row.content))

    async def attempt(self, notification: Notification, timeout: float) -> DeliveryResult:
        """One send through ``meshd_notify`` with a hard deadline (a third-party notifier may block)."""
        async with self._limiter:
            with anyio.move_on_after(timeout + 1.0) as scope:
                result = await self.rt.daemon.hooks.notify(self.rt.daemon, notification)
        if scope.cancelled_caught:
            return DeliveryResult(False, retryable=True, detail=f"timeout: no answer within {timeout:.0f}s")
        if result is None:
            return DeliveryResult(False, retryable=False, detail="no_notifier: no plugin delivered it")
        if not isinstance(result, DeliveryResult):
            return DeliveryResult(False, retryable=False,
                                  detail=f"error: meshd_notify returned a {type(result).__name__}, not a DeliveryResult")
        return result

    async def _send(self, row: Row, receiver: Receiver, target: Target, lost: anyio.Event) -> None:
        state = row.targets[str(target.index)]
        settings = self.rt.settings.delivery
        where = f"{receiver.name}[{target.index}] ({target.scheme})"
        while not lost.is_set():
            if time.time() - row.created_at > settings.give_up_after:
                state["state"], state["error"] = "failed", "gave up: too old"
                self.rt.metrics.dropped.labels(receiver.name, "too_old").inc()
                self.log.error("gave up on a notification to %s after %.0fs", where, settings.give_up_after)
                await self.rt.outbox.run(self.rt.outbox.sync.save, row)
                await self._broken_receiver(receiver.name, f"a notification could not be delivered for "
                                                           f"{settings.give_up_after:.0f}s")
                return
            try:
                notification = self.notification(row, receiver, target)
            except Exception as exc:  # a template bug must not wedge the group
                self.rt.metrics.errors.labels("template").inc()
                self.log.error("cannot render the notification for %s: %s: %s", where, type(exc).__name__, exc,
                               exc_info=exc)
                result = DeliveryResult(False, retryable=False, detail=f"error: template: {type(exc).__name__}")
            else:
                result = await self.attempt(notification, receiver.timeout)
            state["attempts"] = int(state.get("attempts", 0)) + 1
            row.attempts += 1
            if result.ok:
                state["state"] = "sent"
                state.pop("error", None)
                await self.rt.outbox.run(self.rt.outbox.sync.save, row)
                self.rt.metrics.sent.labels(receiver.name).inc()
                self.rt.metrics.latency.labels(receiver.name).observe(
                    max(0.0, time.time() - float(row.content.get("at", row.created_at))))
                if state["attempts"] > 1:
                    self.log.info("delivered to %s after %d attempts", where, state["attempts"])
                await self.receiver_ok(receiver.name)
                return
            reason = failure_reason(result)
            self.rt.metrics.failed.labels(receiver.name, reason).inc()
            state["error"] = result.detail[:300]
            row.last_error = f"{where}: {result.detail[:300]}"
            if not result.retryable:
                state["state"] = "failed"
                await self.rt.outbox.run(self.rt.outbox.sync.save, row)
                self.rt.metrics.dropped.labels(receiver.name, reason).inc()
                self.log.error("notification to %s failed for good: %s", where, result.detail[:300])
                await self._broken_receiver(receiver.name, result.detail[:300])
                return
            delay = self.policy.delay(state["attempts"], retry_after=result.retry_after,
                                      rate_limited=reason == "http_429", rng=self.rng)
            await self.rt.outbox.run(self.rt.outbox.sync.save, row)
            if state["attempts"] == 1:
                self.log.warning("delivery to %s failed (%s); retrying with backoff", where, result.detail[:300])
            failing = self._failing_since.setdefault(receiver.name, time.monotonic())
            if time.monotonic() - failing >= settings.broken_after:
                await self._broken_receiver(receiver.name, result.detail[:300])
            with anyio.move_on_after(delay):
                await lost.wait()

    # ------------------------------------------------------------ NotifierBroken

    def _broken_alert(self, receiver: str, status: str, reason: str = "") -> Alert:
        labels = {"alertname": NOTIFIER_BROKEN, "severity": "critical", "region": self.rt.region,
                  "receiver": receiver}
        annotations = {"summary": f"Notifications to {receiver} are failing in {self.rt.region}"}
        if reason:
            annotations["description"] = reason
        return Alert(labels=labels, annotations=annotations, status=status)  # type: ignore[arg-type]

    async def _broken_receiver(self, receiver: str, reason: str) -> None:
        if self._broken.get(receiver) == reason:
            return
        first = receiver not in self._broken
        self._broken[receiver] = reason
        if first:
            self.log.error("receiver %s is broken: %s (NotifierBroken raised)", receiver, reason)
        await self.rt.daemon.hooks.alert(self.rt.daemon, self._broken_alert(receiver, "firing", reason))

    async def receiver_ok(self, receiver: str) -> None:
        """The receiver accepted a notification (from this daemon or a peer): NotifierBroken resolves."""
        self._failing_since.pop(receiver, None)
        if self._broken.pop(receiver, None) is not None:
            self.log.info("receiver %s works again (NotifierBroken resolved)", receiver)
            await self.rt.daemon.hooks.alert(self.rt.daemon, self._broken_alert(receiver, "resolved"))

    @property
    def fence_ok(self) -> bool:
        return self._fence_ok

    @property
    def broken(self) -> dict[str, str]:
        return dict(self._broken)

