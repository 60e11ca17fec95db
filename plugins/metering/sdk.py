"""The Python SDK for regional services: validate usage events, publish them durably, learn their fate.

::

    from meshd_plugins.metering.sdk import UsageClient

    client = await UsageClient.connect(["nats://nats.eu-west-1:4222"], federation="acme",
                                       region="eu-west-1", user="usage-eu-west-1", password=...)
    result = await client.publish([
        {"id": "req-7f3a", "source": "//api-gw/eu-west-1", "tenant": "acme-eu",
         "meter": "api_calls", "value": 1, "time": "2026-10-04T12:00:00Z"},
    ], wait=5)
    assert result.ok, result.rejected

Events are checked locally first (the daemon's checks that need no config:
ids, types, decimals, timestamps); the valid ones are packed into batches
(one JetStream message of up to ``batch_size`` events) and stored in the
region's stream with a JetStream acknowledgement; a batch that was not
acknowledged is sent again with the same Nats-Msg-Id, so JetStream drops the
copy if the first one got through. With ``wait``, the client waits for the
daemon's receipts, which say what the ledger counted, what it had counted
before (duplicates) and what it rejected, with the reason.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from meshd.transport import close_connection, round_trip

from .events import Policy, Reason, Rejection, UsageEvent, batch_msg_id, checker, encode, event_msg_id
from .subjects import (
    MSG_ID_HEADER,
    RECEIPT_HEADER,
    bucket_of,
    bucket_subject,
    receipt_subject,
    service_inbox_prefix,
    usage_subject,
)


@dataclass
class PublishResult:
    """What became of the events of one :meth:`UsageClient.publish` call.

    Indexes refer to the caller's list of events.
    """

    stored: int = 0
    """Events the region's stream acknowledged (durable from then on)."""
    duplicate_messages: int = 0
    """Batches JetStream already held (a retry or a resend within its window): stored once."""
    failed: list[tuple[int, str]] = field(default_factory=list)
    """(index, error) of events not stored: the stream did not acknowledge their batch."""
    rejected: list[Rejection] = field(default_factory=list)
    """Events refused, by the local checks or by the daemon (from receipts), with the reason."""
    accepted: int = 0
    """Events the ledger counted now (from receipts)."""
    duplicates: int = 0
    """Events the ledger had already counted (from receipts)."""
    pending: int = 0
    """Stored batches whose receipt did not arrive within ``wait`` (their events will still be counted)."""
    rejected_unlisted: int = 0
    """Rejections beyond the ones a receipt lists (a receipt lists at most 500)."""

    @property
    def ok(self) -> bool:
        return not self.failed and not self.rejected and not self.rejected_unlisted


@dataclass
class _Batch:
    indexes: list[int]
    data: bytes
    msg_id: str
    subject: str


class UsageClient:
    """Publishes usage events into one region's stream."""

    def __init__(self, nc: Any, *, federation: str, region: str, batch_size: int = 500,
                 max_batch_bytes: int = 512 * 1024, max_in_flight: int = 64, publish_timeout: float = 5.0,
                 retries: int = 3, meters: Mapping[str, Any] | None = None, future_skew: float = 300.0,
                 receipts: bool = True, trust_bundle: Path | None = None, sorted_by_tenant: bool = False):
        """``sorted_by_tenant``: publish each tenant bucket's events on its own subject, so that with
        ``metering.partitions`` > 1 each partition's consumer takes them directly (no forwarding hop)."""
        self.nc = nc
        self.sorted_by_tenant = sorted_by_tenant
        self.federation, self.region = federation, region
        self.batch_size, self.max_batch_bytes = batch_size, max_batch_bytes
        self.max_in_flight, self.publish_timeout, self.retries = max_in_flight, publish_timeout, retries
        from .config import MeterKind

        kinds = {name: MeterKind(k) for name, k in meters.items()} if meters is not None else None
        self.policy = Policy(meters=kinds, future_skew=future_skew)
        self.subject = usage_subject(federation, region)
        self.token = secrets.token_hex(8) if receipts else None
        self._receipts: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._sub: Any = None
        self._opener: Any = None
        if trust_bundle is not None:
            from meshd.config import TrustBundle, load_model_file
            from meshd.envelope import Opener
            from meshd.identity import TrustStore

            self._opener = Opener(federation, TrustStore(load_model_file(trust_bundle, TrustBundle)))
        self._owns_connection = False

    @classmethod
    async def connect(cls, servers: list[str], *, federation: str, region: str, user: str | None = None,
                      password: str | None = None, inbox_prefix: str | None = None,
                      **options: Any) -> UsageClient:
        """Connect to NATS as a usage publisher of ``region`` (see docs/metering.md for its permissions)."""
        import nats

        connect: dict[str, Any] = {"servers": servers, "inbox_prefix": inbox_prefix or service_inbox_prefix(region),
                                   "name": f"meshd-usage-{region}"}
        if user is not None:
            connect.update(user=user, password=password)
        client = cls(await nats.connect(**connect), federation=federation, region=region, **options)
        client._owns_connection = True
        await client.start()
        return client

    async def start(self) -> None:
        """Listen for receipts (called by :meth:`connect`; call it yourself with your own connection)."""
        if self.token is not None and self._sub is None:
            self._sub = await self.nc.subscribe(receipt_subject(self.federation, self.region, self.token),
                                                cb=self._on_receipt)
            await round_trip(self.nc)

    async def close(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
        if self._owns_connection:
            await close_connection(self.nc)

    async def __aenter__(self) -> UsageClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ publishing

    async def record(self, *, tenant: str, meter: str, value: Any = None, id: str | None = None,
                     source: str = "meshd-sdk", time: str | datetime | None = None,
                     wait: float | None = None) -> PublishResult:
        """Publish one event; ``id`` defaults to a new UUID (pass your own to make retries idempotent)."""
        event: dict[str, Any] = {"id": id or str(uuid.uuid4()), "source": source, "tenant": tenant, "meter": meter}
        if value is not None:
            event["value"] = value
        if time is not None:
            event["time"] = time
        return await self.publish([event], wait=wait)

    async def publish(self, events: Iterable[Mapping[str, Any]], *, wait: float | None = None) -> PublishResult:
        """Check, batch and store ``events``; with ``wait`` seconds, also collect the daemon's receipts."""
        result = PublishResult()
        valid: list[tuple[int, dict[str, Any], UsageEvent]] = []
        check = checker(time.time(), self.policy)
        for index, raw in enumerate(events):
            obj = _prepare(raw)
            checked = check(obj, index)
            if isinstance(checked, Rejection):
                result.rejected.append(checked)
            else:
                valid.append((index, obj, checked))
        batches = list(self._batches(valid))
        want_receipts = wait is not None and self.token is not None
        futures: dict[str, asyncio.Future[dict[str, Any]]] = {}
        if want_receipts:
            loop = asyncio.get_running_loop()
            for batch in batches:
                futures[batch.msg_id] = self._receipts.setdefault(batch.msg_id, loop.create_future())
        limit = asyncio.Semaphore(self.max_in_flight)
        stored: list[_Batch] = []

        async def send(batch: _Batch) -> None:
            async with limit:
                error, duplicate = await self._store(batch)
            if error is not None:
                result.failed.extend((i, error) for i in batch.indexes)
                futures.pop(batch.msg_id, None)
            elif duplicate:
                result.duplicate_messages += 1
                result.stored += len(batch.indexes)
                futures.pop(batch.msg_id, None)  # JetStream dropped it: no new receipt will come
            else:
                result.stored += len(batch.indexes)
                stored.append(batch)

        await asyncio.gather(*(send(b) for b in batches))
        if want_receipts and futures:
            await self._collect(stored, futures, wait or 0.0, result)
        for batch in batches:
            self._receipts.pop(batch.msg_id, None)
        result.rejected.sort(key=lambda r: r.index)
        return result

    def _batches(self, valid: list[tuple[int, dict[str, Any], UsageEvent]]) -> Iterable[_Batch]:
        if not self.sorted_by_tenant:
            for i in range(0, len(valid), self.batch_size):
                yield from self._fit(valid[i:i + self.batch_size], self.subject)
            return
        buckets: dict[str, int] = {}
        groups: dict[int, list[tuple[int, dict[str, Any], UsageEvent]]] = {}
        for item in valid:
            tenant = item[2].tenant
            bucket = buckets.get(tenant)
            if bucket is None:
                bucket = buckets[tenant] = bucket_of(tenant)
            groups.setdefault(bucket, []).append(item)
        for bucket, group in groups.items():
            subject = bucket_subject(self.federation, self.region, bucket)
            for i in range(0, len(group), self.batch_size):
                yield from self._fit(group[i:i + self.batch_size], subject)

    def _fit(self, chunk: list[tuple[int, dict[str, Any], UsageEvent]], subject: str) -> Iterable[_Batch]:
        """One message for ``chunk``, or halves of it until each fits ``max_batch_bytes``."""
        if len(chunk) == 1:
            index, obj, event = chunk[0]
            yield _Batch([index], encode(obj), event_msg_id(event.source, event.id), subject)
            return
        data = encode([obj for _, obj, _ in chunk])  # one encoder call per batch, not per event
        if len(data) > self.max_batch_bytes:
            half = len(chunk) // 2
            yield from self._fit(chunk[:half], subject)
            yield from self._fit(chunk[half:], subject)
            return
        yield _Batch([i for i, _, _ in chunk], data, batch_msg_id((e.source, e.id) for _, _, e in chunk), subject)

    async def _store(self, batch: _Batch) -> tuple[str | None, bool]:
        """(error or None, duplicate) after up to ``retries`` resends with the same message id."""
        from nats.js.errors import APIError, NoStreamResponseError

        js = self.nc.jetstream(timeout=self.publish_timeout)
        headers = {MSG_ID_HEADER: batch.msg_id}
        if self.token is not None:
            headers[RECEIPT_HEADER] = self.token
        error = "not sent"
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(min(0.2 * 2 ** attempt, 5.0))
            try:
                ack = await js.publish(batch.subject, batch.data, headers=dict(headers))
                return None, bool(ack.duplicate)
            except NoStreamResponseError:
                error = (f"no stream captures {batch.subject}: is the {self.region} daemon running "
                         "with meters configured?")
            except APIError as exc:
                error = f"the stream refused the batch: {exc.description or exc}"
            except Exception as exc:  # timeouts, reconnects: resend, JetStream drops a copy
                error = f"{type(exc).__name__}: {exc}".rstrip(": ")
        return error, False

    # ------------------------------------------------------------ receipts

    async def _on_receipt(self, msg: Any) -> None:
        try:
            if self._opener is not None:
                body = self._opener.open(msg.data, msg.headers).body
            else:
                body = json.loads(msg.data)["body"]
            future = self._receipts.get(body.get("msg_id"))
        except Exception:
            return  # not a receipt we can read: ignore it, the result reports the batch as pending
        if future is not None and not future.done():
            future.set_result(body)

    async def _collect(self, stored: list[_Batch], futures: dict[str, asyncio.Future[dict[str, Any]]],
                       wait: float, result: PublishResult) -> None:
        pending = [futures[b.msg_id] for b in stored if b.msg_id in futures]
        if pending:
            await asyncio.wait(pending, timeout=wait)
        for batch in stored:
            future = futures.get(batch.msg_id)
            if future is None or not future.done():
                result.pending += 1
                continue
            body = future.result()
            result.accepted += int(body.get("accepted", 0))
            result.duplicates += int(body.get("duplicates", 0))
            listed = body.get("rejected", [])
            result.rejected_unlisted += max(0, int(body.get("rejected_total", 0)) - len(listed))
            for raw in listed:
                r = Rejection.from_json(raw)
                index = batch.indexes[r.index] if 0 <= r.index < len(batch.indexes) else -1
                result.rejected.append(Rejection(r.reason, r.detail, index, r.id, r.source))


def _prepare(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A plain dict with datetimes written as RFC 3339 (the event as it will be sent)."""
    if not isinstance(raw, Mapping):
        return raw  # type: ignore[return-value]  # check_event rejects it with a reason
    obj = dict(raw)
    when = obj.get("time")
    if isinstance(when, datetime):
        if when.tzinfo is None:
            obj["time"] = when.isoformat()  # rejected as bad_time: no offset
        else:
            obj["time"] = when.isoformat().replace("+00:00", "Z")
    return obj


__all__ = ["PublishResult", "Reason", "Rejection", "UsageClient"]
