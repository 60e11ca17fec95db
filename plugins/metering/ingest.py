"""From the region's JetStream stream into the ledger, acknowledging only after the commit.

A durable pull consumer fetches up to ``fetch_batch`` messages; a worker
thread validates every event in them, another applies the whole batch to the
ledger in one SQLite transaction; then, back on the event loop, each message
is acknowledged and its publisher (if it asked) gets a receipt. While one
batch is being committed the next one is already validated and the one
after it fetched.

A crash between the commit and the acks makes JetStream redeliver the batch;
the ledger's dedup records turn it into duplicates, so nothing is counted
twice. A bad event is rejected and its message acknowledged like any other:
it never stalls the stream. A batch the ledger cannot commit (disk full, a
row that does not decrypt) is handed back to JetStream (nak with a delay) and
retried with backoff, never dropped.

With several partitions (``metering.partitions``) there is one such
consumer per partition, each filtering its tenant buckets and writing its
own ledger shard, plus a router that takes what arrived on the unsorted
subjects. An event that reaches a consumer other than its tenant's (the
router's, or one a publisher sorted by an outdated hash) is forwarded to its
bucket subject before the message is acknowledged, so every event is counted
in the one shard that holds its tenant's dedup records.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskStatus

from meshd.backoff import Backoff

from .config import MeteringConfig
from .events import Policy, Reason, Rejection, UsageEvent, check_message, dedup_key, encode, wire
from .gcpause import collector_paused
from .ledger import Ledger
from .subjects import (
    BUCKETS,
    CONSUMER,
    MSG_ID_HEADER,
    RECEIPT_HEADER,
    RECEIPT_TOKEN,
    ROUTER,
    bucket_of,
    bucket_subject,
    partition_consumer,
    partition_filters,
    stream_name,
    unsorted_subjects,
    usage_subjects,
)

FETCH_WAIT = 1.0
GATHER_WAIT = 0.05
"""How long a fetch waits for more while a batch is already gathered and the ledger is busy."""
FETCH_BACKOFF = (0.5, 15.0)
"""Seconds (first, longest) between tries to reach the stream."""
COMMIT_BACKOFF = (0.5, 30.0)
"""Seconds (first, longest) a batch the ledger failed to commit waits before its redelivery."""
MAX_RECEIPT_REJECTIONS = 500


@dataclass(slots=True)
class Incoming:
    """One stream message, detached from the NATS client."""

    data: bytes
    headers: dict[str, str] | None
    stream_seq: int
    stream_ts: float
    handle: Any = None
    """The nats-py message, to acknowledge it."""


@dataclass
class Outcome:
    """What became of one stream message's events."""

    stream_seq: int
    msg_id: str | None
    receipt: str | None
    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    forwarded: int = 0
    """Events of another partition's tenants, sent on to their bucket (each gets its own receipt there)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "stream_seq": self.stream_seq,
            "msg_id": self.msg_id,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": [r.to_json() for r in self.rejected[:MAX_RECEIPT_REJECTIONS]],
            "rejected_total": len(self.rejected),
            "forwarded": self.forwarded,
        }


Forwards = dict[tuple[int, int], list[UsageEvent]]
"""(index of the message in its batch, bucket) -> the events to send to that bucket."""


@dataclass(slots=True)
class Checked:
    """A batch validated, split by owner and given its dedup keys: what the ledger needs to count it."""

    results: list[tuple[list[UsageEvent], list[Rejection]]]
    """Per message: the valid events this ledger counts, and the rejections."""
    forwards: Forwards
    keys: list[list[bytes]]
    """Per message: the dedup key of each of its counted events."""


def process_batch(batch: Sequence[Incoming], policy: Policy, ledger: Ledger | None,
                  owns: Sequence[bool] | None = None) -> tuple[list[Outcome], Forwards]:
    """Validate and count one batch (blocking: runs in a worker thread).

    ``owns[bucket]`` says which tenant buckets this ledger holds (None: all of
    them); events of the others are returned to be forwarded, not counted.
    """
    return count_batch(batch, check_batch(batch, policy, owns, ledger is not None), ledger)


def check_batch(batch: Sequence[Incoming], policy: Policy, owns: Sequence[bool] | None = None,
                keyed: bool = True) -> Checked:
    """The first half of :func:`process_batch`: no ledger, so it may run while the previous batch commits."""
    with collector_paused():
        cache: dict[str, float] = {}
        results: list[tuple[list[UsageEvent], list[Rejection]]] = []
        for item in batch:
            try:
                results.append(check_message(item.data, item.stream_ts, policy, cache))
            except Exception as exc:  # a validator bug must not stall the stream either
                results.append(([], [Rejection(Reason.MALFORMED_JSON, f"undecodable ({type(exc).__name__})")]))
        forwards: Forwards = {}
        if owns is not None:
            _split(results, owns, forwards)
        keys = [[dedup_key(e.source, e.id) for e in events] for events, _ in results] if keyed else []
        return Checked(results, forwards, keys)


def count_batch(batch: Sequence[Incoming], checked: Checked, ledger: Ledger | None) -> tuple[list[Outcome], Forwards]:
    """The second half of :func:`process_batch`: one ledger transaction, and what became of each message."""
    with collector_paused():
        if ledger is not None:
            flags = ledger.apply([(events, item.stream_ts) for (events, _), item in zip(checked.results, batch)],
                                 checked.keys)
        else:
            flags = [[] for _ in batch]
        moved = [0] * len(batch)
        for (index, _), events in checked.forwards.items():
            moved[index] += len(events)
        outcomes = []
        for item, (_, rejected), counted, forwarded in zip(batch, checked.results, flags, moved):
            headers = item.headers or {}
            token = headers.get(RECEIPT_HEADER)
            n = sum(counted)
            outcomes.append(Outcome(item.stream_seq, headers.get(MSG_ID_HEADER),
                                    token if token and RECEIPT_TOKEN.match(token) else None,
                                    n, len(counted) - n, rejected, forwarded))
        return outcomes, checked.forwards


def _split(checked: list[tuple[list[UsageEvent], list[Rejection]]], owns: Sequence[bool],
           forwards: Forwards) -> None:
    """Keep in ``checked`` the events of owned buckets; move the others into ``forwards``."""
    buckets: dict[str, int] = {}  # a batch holds few tenants: hash each once
    for index, (events, rejected) in enumerate(checked):
        kept: list[UsageEvent] | None = None
        for position, event in enumerate(events):
            bucket = buckets.get(event.tenant)
            if bucket is None:
                bucket = buckets[event.tenant] = bucket_of(event.tenant)
            if owns[bucket]:
                if kept is not None:
                    kept.append(event)
                continue
            if kept is None:
                kept = events[:position]
            forwards.setdefault((index, bucket), []).append(event)
        if kept is not None:
            checked[index] = (kept, rejected)


def owned_buckets(partition: int | None, partitions: int) -> list[bool] | None:
    """Which buckets partition ``partition`` holds; None for the one-partition layout (all of them)."""
    if partitions == 1 and partition is not None:
        return None
    return [partition is not None and b % partitions == partition for b in range(BUCKETS)]


class Ingestor:
    """One consumer of a region's usage stream: a partition's into its ledger shard, or the router.

    ``ledger`` None makes the router: it counts nothing and forwards every
    event of the unsorted subjects to its bucket.
    """

    def __init__(self, *, nc: Any, federation: str, region: str, settings: MeteringConfig, ledger: Ledger | None,
                 policy: Callable[[], Policy], on_outcomes: Callable[[list[Outcome], float], Any],
                 on_failure: Callable[[Exception, int], Any], log: logging.Logger, partition: int = 0):
        self.nc, self.federation, self.region = nc, federation, region
        self.settings, self.ledger, self.policy = settings, ledger, policy
        self.on_outcomes, self.on_failure = on_outcomes, on_failure
        self.log = log
        self.stream = stream_name(federation, region)
        self.partitions = settings.partitions
        self.partition = partition if ledger is not None else None
        if ledger is None:
            self.consumer, self.filters = ROUTER, unsorted_subjects(federation, region)
        else:
            self.consumer = partition_consumer(partition, self.partitions)
            self.filters = partition_filters(federation, region, partition, self.partitions)
        self.owns = owned_buckets(self.partition, self.partitions)
        self.lag = 0
        self.running = False
        self.stopping = False
        self.last_commit: float | None = None
        self._sub: Any = None
        self._fetch_error: str | None = None
        self._taken_over = False

    # ------------------------------------------------------------ setup

    def _stream_config(self) -> Any:
        from nats.js import api

        s = self.settings.stream
        placement = None
        if s.placement_tags or s.placement_cluster:
            placement = api.Placement(cluster=s.placement_cluster, tags=list(s.placement_tags) or None)
        return api.StreamConfig(
            name=self.stream,
            description=f"meshd usage events of region {self.region}",
            subjects=usage_subjects(self.federation, self.region),
            # Work queue: an acknowledged message is deleted; the ledger is the record.
            retention=api.RetentionPolicy.WORK_QUEUE,
            storage=api.StorageType.FILE,
            num_replicas=s.replicas,
            duplicate_window=s.duplicate_window,
            max_bytes=s.max_bytes or -1,
            discard=api.DiscardPolicy.NEW,
            placement=placement,
        )

    async def setup(self) -> None:
        """Create or update the stream and the durable consumer, and bind to it."""
        from nats.js import api
        from nats.js.errors import BadRequestError

        js = self.nc.jetstream(timeout=10)
        config = self._stream_config()
        try:
            await js.add_stream(config)
        except BadRequestError:
            try:
                await js.update_stream(config)
            except BadRequestError as exc:
                self.log.warning("stream %s exists with settings that cannot change (%s); using it as it is",
                                 self.stream, exc.description)
        consumer = api.ConsumerConfig(
            durable_name=self.consumer,
            filter_subjects=self.filters or None,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_wait=self.settings.ack_wait,
            max_deliver=-1,  # never give up on a message: the ledger must see it
            max_ack_pending=self.settings.max_ack_pending,
        )
        if not self._taken_over:
            await self._remove_other_layouts(js)
            await self._take_over(js)
        try:
            await js.add_consumer(self.stream, consumer)
        except BadRequestError as exc:
            self.log.warning("consumer %s of %s exists with other settings (%s); using it as it is",
                             self.consumer, self.stream, exc.description)
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:
                pass
        self._sub = await js.pull_subscribe_bind(durable=self.consumer, stream=self.stream)

    async def _remove_other_layouts(self, js: Any) -> None:
        """Delete the consumers of an earlier partition count: their filters would overlap this layout's.

        Only after ``meshd metering repartition`` (ingestion stopped, shards
        rewritten) can the layout change, so nothing consumes through them any
        more. What they had fetched and not acknowledged stays in the stream
        and comes again through this layout's consumers; the rewritten shards
        hold every dedup record, so whatever was counted before is a duplicate.
        """
        from nats.js.errors import NotFoundError

        current = {partition_consumer(k, self.partitions) for k in range(self.partitions)}
        if self.partitions > 1:
            current.add(ROUTER)
        for info in await js.consumers_info(self.stream):
            name = info.name
            if name in current or not (name in (CONSUMER, ROUTER) or name.startswith(f"{CONSUMER}-p")):
                continue
            self.log.info("removing the consumer %s of an earlier partition count from %s", name, self.stream)
            try:
                await js.delete_consumer(self.stream, name)
            except NotFoundError:
                pass  # another partition's ingestor removed it first

    async def _take_over(self, js: Any) -> None:
        """Reclaim what a crashed predecessor fetched but never acknowledged, now rather than after ack_wait.

        The consumer is this region's alone, so messages it holds unacknowledged
        when the daemon starts belong to a process that died. Recreating the
        consumer hands them out again at once (the stream keeps every message
        until it is acknowledged); whatever that process had committed, the
        ledger now sees as duplicates.
        """
        from nats.js.errors import NotFoundError

        try:
            info = await js.consumer_info(self.stream, self.consumer)
        except NotFoundError:
            self._taken_over = True
            return
        pending = info.num_ack_pending or 0
        if pending:
            self.log.info("taking over %d message(s) a previous run fetched but did not acknowledge", pending)
            await js.delete_consumer(self.stream, self.consumer)
        self._taken_over = True

    # ------------------------------------------------------------ running

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        backoff = Backoff(*FETCH_BACKOFF)
        while True:
            try:
                await self.setup()
                break
            except Exception as exc:
                self._fetch_failed(exc)  # JetStream not (yet) reachable: say so once, keep trying
                await anyio.sleep(backoff.next())
        self._fetch_error = None
        self.running = True
        if self.ledger is not None:
            self.log.info("consuming %s (%s) into the ledger %s", self.stream, self.consumer, self.ledger.path)
        else:
            self.log.info("routing the unsorted subjects of %s to their tenant buckets", self.stream)
        task_status.started()
        # No buffers: a batch is handed over only when the next stage takes it.
        send, receive = anyio.create_memory_object_stream[list[Incoming]](0)
        checked_send, checked_receive = anyio.create_memory_object_stream[
            tuple[list[Incoming], "Checked | Exception", float]](0)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._commit_loop, checked_receive)
                tg.start_soon(self._check_loop, receive, checked_send)
                try:
                    await self._fetch_loop(send)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass  # a later stage stopped for the daemon's leaving: what was fetched stays unacknowledged
        finally:
            self.running = False

    async def _fetch_loop(self, send: Any) -> None:
        """Fetch while the ledger commits, handing over up to ``fetch_batch`` messages at a time.

        While a commit runs, what arrives is fetched and gathered into the
        next batch, so a stream that trickles in still makes large
        transactions instead of many small ones.
        """
        backoff = Backoff(*FETCH_BACKOFF)
        need_setup = False
        pending: list[Incoming] = []
        limit = self.settings.fetch_batch
        async with send:
            while not self.stopping:
                if pending:
                    try:
                        send.send_nowait(pending)  # the commit loop is idle: give it what we have
                        pending = []
                    except anyio.WouldBlock:
                        if len(pending) >= limit:
                            await send.send(pending)
                            pending = []
                            continue
                try:
                    if need_setup:
                        await self.setup()
                        need_setup = False
                    msgs = await self._sub.fetch(limit - len(pending), timeout=GATHER_WAIT if pending else FETCH_WAIT)
                except TimeoutError:
                    if not pending:
                        self.lag = 0
                    continue
                except Exception as exc:
                    self._fetch_failed(exc)
                    await anyio.sleep(backoff.next())
                    need_setup = True
                    continue
                if self._fetch_error is not None:
                    self.log.info("fetching from %s again", self.stream)
                    self._fetch_error = None
                backoff.reset()
                for m in msgs:
                    meta = m.metadata
                    pending.append(Incoming(m.data, m.headers, meta.sequence.stream, meta.timestamp.timestamp(), m))
                if msgs:
                    self.lag = msgs[-1].metadata.num_pending

    async def stop(self) -> None:
        """The daemon is leaving: finish the batch in hand, take no new one, and stop complaining.

        The pull subscription goes first: left to the connection's drain, the
        status messages queued on it would hold the drain up until its deadline.
        """
        self.stopping = True
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception:
                pass

    def _fetch_failed(self, exc: Exception) -> None:
        if self.stopping:
            return
        text = f"{type(exc).__name__}: {exc}".rstrip(": ")
        if text != self._fetch_error:  # one line per change, not one per retry
            self.log.warning("cannot use the stream %s (%s); retrying with backoff", self.stream, text)
            self._fetch_error = text

    async def _check_loop(self, receive: Any, send: Any) -> None:
        """Validate the next batch while the previous one commits.

        The commit spends most of its time in SQLite, which lets go of the
        GIL: validating meanwhile puts the second core to work instead of
        leaving the batches to wait for each other.
        """
        async with receive, send:
            async for batch in receive:
                if self.stopping:
                    return
                began = time.perf_counter()
                checked: Checked | Exception
                try:
                    checked = await anyio.to_thread.run_sync(check_batch, batch, self.policy(), self.owns,
                                                             self.ledger is not None)
                except Exception as exc:  # handed back by the commit loop like a failed commit
                    checked = exc
                try:
                    await send.send((batch, checked, time.perf_counter() - began))
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return  # the commit loop stopped: this batch stays unacknowledged and comes again

    async def _commit_loop(self, receive: Any) -> None:
        backoff = Backoff(*COMMIT_BACKOFF)
        async with receive:
            async for batch, checked, checking in receive:
                if self.stopping:
                    return  # unacknowledged: JetStream delivers it again after the restart
                began = time.perf_counter()
                try:
                    if isinstance(checked, Exception):
                        raise checked
                    outcomes, forwards = await anyio.to_thread.run_sync(count_batch, batch, checked, self.ledger)
                    if forwards:
                        await self._forward(batch, forwards)
                except Exception as exc:
                    delay = backoff.next()
                    await self._hand_back(batch, delay)
                    await _maybe_await(self.on_failure(exc, backoff.attempts))
                    await anyio.sleep(delay)
                    continue
                backoff.reset()
                self.last_commit = time.time()
                for item in batch:
                    try:
                        await item.handle.ack()
                    except Exception:
                        pass  # lost ack: JetStream redelivers, the ledger calls it a duplicate
                await _maybe_await(self.on_outcomes(outcomes, checking + time.perf_counter() - began))

    async def _forward(self, batch: Sequence[Incoming], forwards: Forwards) -> None:
        """Store events of other buckets on their subjects, before their message is acknowledged.

        The message id is derived from the original's stream sequence: a
        forward repeated after a crash is dropped by JetStream within its
        window, and counted once by the target shard's dedup records after it.
        """
        js = self.nc.jetstream(timeout=10)
        for (index, bucket), events in forwards.items():
            item = batch[index]
            headers = {MSG_ID_HEADER: f"fwd-{self.stream}-{item.stream_seq}-{bucket}"}
            token = (item.headers or {}).get(RECEIPT_HEADER)
            if token:
                headers[RECEIPT_HEADER] = token
            await js.publish(bucket_subject(self.federation, self.region, bucket),
                             encode([wire(e) for e in events]), headers=headers)

    async def _hand_back(self, batch: Sequence[Incoming], delay: float) -> None:
        for item in batch:
            try:
                await item.handle.nak(delay=delay)
            except Exception:
                pass  # its ack_wait runs out and JetStream redelivers it anyway


async def _maybe_await(result: Any) -> None:
    if hasattr(result, "__await__"):
        await result
