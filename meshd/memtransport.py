"""An in-memory :class:`~meshd.transport.Transport` for fast unit tests.

A :class:`MemoryNetwork` plays the NATS server for every transport attached
to it in one event loop. Tests can cut a transport off (``network.cut(t)``)
to simulate a lost connection or a partition, and heal it again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterable, Sequence

from .transport import (
    Entry,
    Handler,
    KeyExists,
    KeyValueStore,
    Message,
    RequestTimeout,
    RevisionMismatch,
    StateCallback,
    Subscription,
    Transport,
    TransportError,
)

log = logging.getLogger("meshd.memtransport")


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard matching: ``*`` is one token, a final ``>`` one or more."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


class _MemKV(KeyValueStore):
    def __init__(self) -> None:
        self._data: dict[str, Entry] = {}
        self._rev = itertools.count(1)

    async def create(self, key: str, value: bytes) -> int:
        if key in self._data:
            raise KeyExists(key)
        return self._set(key, value)

    def _set(self, key: str, value: bytes) -> int:
        rev = next(self._rev)
        self._data[key] = Entry(key, bytes(value), rev)
        return rev

    async def get(self, key: str) -> Entry | None:
        return self._data.get(key)

    async def put(self, key: str, value: bytes) -> int:
        return self._set(key, value)

    async def update(self, key: str, value: bytes, revision: int) -> int:
        current = self._data.get(key)
        if (current.revision if current else 0) != revision:
            raise RevisionMismatch(key)
        return self._set(key, value)

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    async def keys(self) -> list[str]:
        return list(self._data)


class _MemKVView(KeyValueStore):
    """A transport's handle on a shared bucket: fails while that transport is cut off."""

    def __init__(self, transport: MemoryTransport, store: _MemKV):
        self._t, self._store = transport, store

    def _check(self) -> _MemKV:
        if not self._t.connected:
            raise TransportError("not connected")
        return self._store

    async def create(self, key: str, value: bytes) -> int:
        return await self._check().create(key, value)

    async def get(self, key: str) -> Entry | None:
        return await self._check().get(key)

    async def put(self, key: str, value: bytes) -> int:
        return await self._check().put(key, value)

    async def update(self, key: str, value: bytes, revision: int) -> int:
        return await self._check().update(key, value, revision)

    async def delete(self, key: str) -> None:
        await self._check().delete(key)

    async def keys(self) -> list[str]:
        return await self._check().keys()


class _MemSubscription(Subscription):
    def __init__(self, transport: MemoryTransport, subject: str, handler: Handler, queue: str | None):
        self.transport, self.subject, self.handler, self.queue = transport, subject, handler, queue
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        while True:
            msg = await self.inbox.get()
            try:
                await self.handler(msg)
            except Exception:
                log.exception("handler for %s failed", self.subject)

    async def unsubscribe(self) -> None:
        self.transport._subs.discard(self)
        self.task.cancel()


class MemoryNetwork:
    """The shared 'server' of a set of in-memory transports."""

    def __init__(self) -> None:
        self.transports: list[MemoryTransport] = []
        self._buckets: dict[str, _MemKV] = {}
        self._inbox = itertools.count(1)

    def transport(self, name: str = "") -> MemoryTransport:
        t = MemoryTransport(self, name)
        self.transports.append(t)
        return t

    async def cut(self, transports: Iterable[MemoryTransport]) -> None:
        """Disconnect these transports (they see connected=False) until healed."""
        for t in transports:
            if t._linked:
                t._linked = False
                await t._emit(False)

    async def heal(self, transports: Iterable[MemoryTransport] | None = None) -> None:
        for t in transports if transports is not None else self.transports:
            if t._open and not t._linked:
                t._linked = True
                await t._emit(True)

    def _deliver(self, msg: Message) -> None:
        groups: dict[str, list[_MemSubscription]] = {}
        for t in self.transports:
            if not t.connected:
                continue
            for sub in t._subs:
                if subject_matches(sub.subject, msg.subject):
                    if sub.queue:
                        groups.setdefault(sub.queue, []).append(sub)
                    else:
                        sub.inbox.put_nowait(msg)
        for members in groups.values():
            members[hash(msg.data) % len(members)].inbox.put_nowait(msg)


class MemoryTransport(Transport):
    def __init__(self, network: MemoryNetwork, name: str):
        self.network, self.name = network, name
        self._open = False
        self._linked = True
        self._subs: set[_MemSubscription] = set()
        self._callbacks: list[StateCallback] = []
        self.refuse_connect = False

    @property
    def connected(self) -> bool:
        return self._open and self._linked

    def on_state(self, callback: StateCallback) -> None:
        self._callbacks.append(callback)

    async def _emit(self, connected: bool) -> None:
        for cb in self._callbacks:
            result = cb(connected)
            if result is not None:
                await result

    async def connect(self) -> None:
        if self.refuse_connect:
            raise TransportError("connection refused")
        self._open = True

    async def close(self) -> None:
        for sub in list(self._subs):
            await sub.unsubscribe()
        self._open = False

    def _check(self) -> None:
        if not self._open:
            raise TransportError("not connected")

    async def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None,
                      reply: str | None = None) -> None:
        self._check()
        if self._linked:  # while cut off, messages are silently lost, as on a dead TCP path
            self.network._deliver(Message(subject, bytes(data), dict(headers) if headers else None, reply))

    async def subscribe(self, subject: str, handler: Handler, queue: str | None = None) -> Subscription:
        self._check()
        sub = _MemSubscription(self, subject, handler, queue)
        self._subs.add(sub)
        return sub

    async def request(self, subject: str, data: bytes, headers: dict[str, str] | None, timeout: float) -> Message:
        self._check()
        inbox = f"_INBOX.mem.{next(self.network._inbox)}"
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

        async def on_reply(msg: Message) -> None:
            if not future.done():
                future.set_result(msg)

        sub = await self.subscribe(inbox, on_reply)
        try:
            await self.publish(subject, data, headers, reply=inbox)
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise RequestTimeout(subject) from None
        finally:
            await sub.unsubscribe()

    async def respond(self, request: Message, data: bytes, headers: dict[str, str] | None = None) -> None:
        if not request.reply:
            raise TransportError("message has no reply subject")
        await self.publish(request.reply, data, headers)

    async def key_value(self, bucket: str, *, replicas: int = 1, history: int = 1, ttl: float = 0,
                        placement: Sequence[str] = ()) -> KeyValueStore:
        self._check()
        return _MemKVView(self, self.network._buckets.setdefault(bucket, _MemKV()))
