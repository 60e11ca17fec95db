"""The message transport under the bus, behind an abstract class.

:class:`Transport` and :class:`KeyValueStore` state what meshd relies on from
NATS; :class:`NatsTransport` is the real thing and
:mod:`meshd.memtransport` an in-memory fake for fast unit tests. Both pass
the same contract tests (``tests/test_transport_contract.py``).
"""

from __future__ import annotations

import abc
import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio

from .config import NatsConfig
from .logs import register_secret


class TransportError(Exception):
    """The transport could not do what was asked (not connected, refused...)."""


class RequestTimeout(TransportError):
    """No reply arrived in time (or nobody is listening on the subject)."""


class KeyExists(TransportError):
    """A create-only write found the key already present."""


class RevisionMismatch(TransportError):
    """A compare-and-set write found another revision than the one expected."""


class NotStored(TransportError):
    """A write no stream answered (no responders, e.g. a bucket whose stream is still electing its leader).

    Nothing was stored, so retrying is safe; unlike a timeout, after which the write may have landed.
    """


@dataclass(frozen=True, slots=True)
class Message:
    subject: str
    data: bytes
    headers: dict[str, str] | None
    reply: str | None


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    value: bytes
    revision: int


@dataclass(frozen=True, slots=True)
class KeyChange:
    """One change a :meth:`KeyValueStore.watch` reports."""

    key: str
    value: bytes | None
    """None when the key was deleted or purged."""
    revision: int


class KeyWatch(abc.ABC):
    """The changes of a bucket, in revision order: ``async for change in watch`` (see :meth:`KeyValueStore.watch`)."""

    def __aiter__(self) -> KeyWatch:
        return self

    @abc.abstractmethod
    async def __anext__(self) -> KeyChange | None:
        """The next change; ``None`` once, when the values that existed at the start have all been given."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """End the watch; iteration then stops."""


Handler = Callable[[Message], Awaitable[None]]
StateCallback = Callable[[bool], Awaitable[None] | None]


class Subscription(abc.ABC):
    @abc.abstractmethod
    async def unsubscribe(self) -> None:
        """Stop delivery; idempotent."""


class KeyValueStore(abc.ABC):
    """A replicated key-value bucket (JetStream KV in production).

    Keys are NATS subject tokens joined by dots (``failover.eu-west-1.7``).
    """

    @abc.abstractmethod
    async def create(self, key: str, value: bytes) -> int:
        """Write ``key`` only if it does not exist; return its revision.

        This is the fencing point: among any number of concurrent callers in
        the whole cluster exactly one create of a key succeeds; every other
        one raises :class:`KeyExists`, before or after that one, for ever
        (until the key is deleted or expires by the bucket's TTL).
        """

    @abc.abstractmethod
    async def get(self, key: str) -> Entry | None:
        """The latest value of ``key``, or None if it has none (never set, or deleted)."""

    @abc.abstractmethod
    async def put(self, key: str, value: bytes) -> int:
        """Write ``key`` unconditionally; return the new revision."""

    @abc.abstractmethod
    async def update(self, key: str, value: bytes, revision: int) -> int:
        """Write ``key`` only if its latest revision is ``revision``; else :class:`RevisionMismatch`."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Remove ``key``; a later create of it succeeds again."""

    @abc.abstractmethod
    async def keys(self) -> list[str]:
        """Every key that currently has a value (order unspecified)."""

    async def watch(self) -> KeyWatch:
        """Every key's latest value, then every change as it happens, in revision order.

        Not abstract: stores that cannot be watched (the in-memory fake) say so.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot be watched")


class Transport(abc.ABC):
    """Subject-based messaging between daemons.

    Guarantees the bus relies on: messages on one subscription are handled
    one at a time in the order the server delivered them; delivery is at
    most once (a message published while disconnected may be lost); a
    subscription made while connected keeps working across reconnects.
    """

    @property
    @abc.abstractmethod
    def connected(self) -> bool:
        """True while messages can flow."""

    @abc.abstractmethod
    async def connect(self) -> None:
        """Connect once; raise :class:`TransportError` if that fails (the caller retries)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush what is pending (time-boxed), unsubscribe everything and disconnect. Idempotent."""

    @abc.abstractmethod
    def on_state(self, callback: StateCallback) -> None:
        """Call ``callback(connected)`` after every loss or recovery of the connection."""

    @abc.abstractmethod
    async def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        """Send one message; at most once. Raises :class:`TransportError` if the connection is closed."""

    @abc.abstractmethod
    async def subscribe(self, subject: str, handler: Handler, queue: str | None = None) -> Subscription:
        """Deliver messages matching ``subject`` (NATS wildcards) to ``handler``.

        With ``queue``, each message goes to one member of the queue group.
        The subscription is registered on the server when this returns.
        Exceptions from ``handler`` are the caller's business: the transport
        logs and drops them and keeps the subscription.
        """

    @abc.abstractmethod
    async def request(self, subject: str, data: bytes, headers: dict[str, str] | None, timeout: float) -> Message:
        """Send a request and return the first reply; :class:`RequestTimeout` if none in ``timeout`` s."""

    @abc.abstractmethod
    async def respond(self, request: Message, data: bytes, headers: dict[str, str] | None = None) -> None:
        """Reply to a message received with a reply subject."""

    @abc.abstractmethod
    async def key_value(self, bucket: str, *, replicas: int = 1, history: int = 1, ttl: float = 0,
                        placement: Sequence[str] = ()) -> KeyValueStore:
        """Open bucket ``bucket``, creating it with these settings if it does not exist.

        ``placement``: server tags the bucket's replicas must all carry (JetStream placement), so that
        data bound to a jurisdiction is only stored on that jurisdiction's servers.
        """


# ---------------------------------------------------------------- NATS


log = logging.getLogger("meshd.transport")


def _read_secret_file(path: Path) -> str:
    secret = path.read_text(encoding="utf-8").strip()
    register_secret(secret)
    return secret


def _tls_context(config: NatsConfig) -> ssl.SSLContext | None:
    tls = config.tls
    if tls is None:
        if any(s.startswith(("tls://", "wss://")) for s in config.servers):
            return ssl.create_default_context()
        return None
    ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    if tls.cert_file:
        ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
    if not tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def nats_connect_options(config: NatsConfig, secret: Callable[[str], str]) -> dict[str, Any]:
    """nats-py ``connect()`` keyword arguments for ``config``.

    ``secret`` turns a config string that may be ``!encrypted`` into plaintext.
    """
    for server in config.servers:
        register_secret(urlsplit(server).password)  # nats://user:PASSWORD@host: the password only
    opts: dict[str, Any] = {
        "servers": list(config.servers),
        "connect_timeout": config.connect_timeout,
        "reconnect_time_wait": config.reconnect_wait,
        "max_reconnect_attempts": -1,
        "ping_interval": config.ping_interval,
        "max_outstanding_pings": config.max_outstanding_pings,
        "allow_reconnect": True,
    }
    if config.user is not None:
        opts["user"] = config.user
    if config.password is not None:
        opts["password"] = secret(config.password)
    elif config.password_file is not None:
        opts["password"] = _read_secret_file(config.password_file)
    if config.token is not None:
        opts["token"] = secret(config.token)
    elif config.token_file is not None:
        opts["token"] = _read_secret_file(config.token_file)
    if config.nkey_seed_file is not None:
        opts["nkeys_seed"] = str(config.nkey_seed_file)
    if config.creds_file is not None:
        opts["user_credentials"] = str(config.creds_file)
    ctx = _tls_context(config)
    if ctx is not None:
        opts["tls"] = ctx
        if config.tls is not None and config.tls.handshake_first:
            opts["tls_handshake_first"] = True
    if config.inbox_prefix:
        opts["inbox_prefix"] = config.inbox_prefix
    return opts


class _NatsSubscription(Subscription):
    def __init__(self, sub: Any):
        self._sub = sub

    async def unsubscribe(self) -> None:
        try:
            await self._sub.unsubscribe()
        except Exception:  # already closed connection or subscription
            pass


class _NatsKV(KeyValueStore):
    def __init__(self, kv: Any):
        self._kv = kv

    async def create(self, key: str, value: bytes) -> int:
        from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoStreamResponseError

        try:
            return int(await self._kv.create(key, value))
        except NoStreamResponseError:
            raise NotStored(key) from None
        except (KeyWrongLastSequenceError, KeyNotFoundError):
            # nats-py answers a create that lost with "wrong last sequence", then reads the key to
            # tell a deleted one from a live one; on a cluster that read can hit a replica that
            # has not caught up yet and say "not found". Either way the stream refused the write.
            raise KeyExists(key) from None

    async def get(self, key: str) -> Entry | None:
        from nats.js.errors import KeyNotFoundError

        try:
            e = await self._kv.get(key)
        except KeyNotFoundError:
            return None
        if e.value is None:
            return None
        return Entry(e.key, e.value, e.revision)

    async def put(self, key: str, value: bytes) -> int:
        from nats.js.errors import NoStreamResponseError

        try:
            return int(await self._kv.put(key, value))
        except NoStreamResponseError:
            raise NotStored(key) from None

    async def update(self, key: str, value: bytes, revision: int) -> int:
        from nats.js.errors import KeyWrongLastSequenceError, NoStreamResponseError

        try:
            return int(await self._kv.update(key, value, last=revision))
        except NoStreamResponseError:
            raise NotStored(key) from None
        except KeyWrongLastSequenceError:
            raise RevisionMismatch(key) from None

    async def delete(self, key: str) -> None:
        await self._kv.delete(key)

    async def keys(self) -> list[str]:
        from nats.js.errors import NoKeysError

        try:
            return list(await self._kv.keys())
        except NoKeysError:
            return []

    async def watch(self) -> KeyWatch:
        return _NatsKeyWatch(await self._kv.watchall())


class _NatsKeyWatch(KeyWatch):
    def __init__(self, watcher: Any):
        self._w = watcher

    async def __anext__(self) -> KeyChange | None:
        entry = await self._w.__anext__()  # StopAsyncIteration once stopped
        if entry is None:
            return None
        deleted = entry.operation in ("DEL", "PURGE") or entry.value is None
        return KeyChange(entry.key, None if deleted else bytes(entry.value), int(entry.revision))

    async def stop(self) -> None:
        try:
            await self._w.stop()
        except Exception:  # the connection is already closed
            pass


async def round_trip(nc: Any, timeout: float = 5.0) -> None:
    """Return once the server has processed every command ``nc`` queued before this call.

    nats-py's ``flush()`` writes its PING straight to the socket, while
    SUB and PUB commands wait in a buffer for the client's flusher task: the
    PONG can come back before the server has seen a SUB queued just before
    (a request sent next then finds "no responders"). So let the flusher
    write the buffer first; the PING then follows everything queued.
    """
    deadline = time.monotonic() + timeout
    while nc.pending_data_size > 0 and nc.is_connected and time.monotonic() < deadline:
        await asyncio.sleep(0)
    await nc.flush(timeout=max(0.1, deadline - time.monotonic()))


CLOSE_FLUSH_TIMEOUT = 0.5
"""Seconds :func:`close_connection` waits for the server to acknowledge what is queued."""
CLOSE_DISCONNECT_TIMEOUT = 1.0
"""Seconds it then gives nats-py to stop its tasks and close the socket (more on a loaded event loop)."""
KV_CREATE_ATTEMPTS = 3
"""Tries to create a missing bucket before the error reaches the caller."""


async def close_connection(nc: Any) -> None:
    """Close a nats-py connection in bounded time (the two timeouts above), whatever the server does; never raises.

    Not ``nc.drain()``: on a server that stopped answering (frozen, or a
    black-holed path) it waits out its 30 s drain timeout and then a 10 s
    flush, and when cancelled sooner it abandons an asyncio.gather of its
    subscriptions' drains whose CancelledError nobody retrieves (asyncio
    prints "_GatheringFuture exception was never retrieved" at exit). A
    bounded round trip gets what is queued (a leave announcement) out.
    """
    if nc.is_closed:
        return
    try:
        if nc.is_connected:
            await round_trip(nc, timeout=CLOSE_FLUSH_TIMEOUT)
    except Exception:
        pass  # the server did not answer: what was queued is lost, as in a crash
    finally:
        # Closing also ends nats-py's tasks (and its wait for that PONG), so
        # it must happen even when the caller's deadline has passed.
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_DISCONNECT_TIMEOUT):
            try:
                await nc.close()
            except Exception:
                pass


class NatsTransport(Transport):
    """The transport over a nats-py connection (reconnects for ever once connected)."""

    def __init__(self, config: NatsConfig, *, name: str, secret: Callable[[str], str] = lambda s: s):
        self._config, self._name, self._secret = config, name, secret
        self._nc: Any = None
        self._callbacks: list[StateCallback] = []

    @property
    def nc(self) -> Any:
        """The raw nats-py client, for JetStream features the abstraction does not cover."""
        return self._nc

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    def on_state(self, callback: StateCallback) -> None:
        self._callbacks.append(callback)

    async def _emit(self, connected: bool) -> None:
        for cb in self._callbacks:
            result = cb(connected)
            if result is not None:
                await result

    async def connect(self) -> None:
        import nats

        async def disconnected() -> None:
            await self._emit(False)

        async def reconnected() -> None:
            await self._emit(True)

        async def error(exc: Exception) -> None:
            log.debug("nats: %s", exc)

        opts = nats_connect_options(self._config, self._secret)
        # nats-py retries a first connect for ever when reconnects are
        # unlimited. The daemon retries first connects itself, with one log
        # line per attempt, so the first one is bounded (each server once)
        # and unlimited reconnection is switched on once connected.
        opts["max_reconnect_attempts"] = 1
        try:
            nc = await nats.connect(
                name=self._name,
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
                error_cb=error,
                **opts,
            )
        except Exception as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
        nc.options["max_reconnect_attempts"] = -1
        self._nc = nc

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None:
            await close_connection(nc)

    def _client(self) -> Any:
        if self._nc is None or self._nc.is_closed:
            raise TransportError("not connected")
        return self._nc

    async def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            await self._client().publish(subject, data, headers=headers)
        except TransportError:
            raise
        except Exception as exc:
            raise TransportError(str(exc) or type(exc).__name__) from None

    async def subscribe(self, subject: str, handler: Handler, queue: str | None = None) -> Subscription:
        async def cb(msg: Any) -> None:
            await handler(Message(msg.subject, msg.data, msg.headers, msg.reply or None))

        nc = self._client()
        sub = await nc.subscribe(subject, queue=queue or "", cb=cb)
        # A round trip to the server, so the interest is registered before we
        # return: a request sent right after must find this subscriber.
        try:
            await round_trip(nc, timeout=5)
        except Exception as exc:
            raise TransportError(f"subscribe {subject}: {exc or type(exc).__name__}") from None
        return _NatsSubscription(sub)

    async def request(self, subject: str, data: bytes, headers: dict[str, str] | None, timeout: float) -> Message:
        from nats.errors import NoRespondersError
        from nats.errors import TimeoutError as NatsTimeout

        try:
            msg = await self._client().request(subject, data, timeout=timeout, headers=headers)
        except NoRespondersError:
            raise RequestTimeout(f"{subject}: no responders") from None
        except (NatsTimeout, TimeoutError):
            raise RequestTimeout(f"{subject}: no reply within {timeout:g}s") from None
        except TransportError:
            raise
        except Exception as exc:
            raise TransportError(str(exc) or type(exc).__name__) from None
        return Message(msg.subject, msg.data, msg.headers, None)

    async def respond(self, request: Message, data: bytes, headers: dict[str, str] | None = None) -> None:
        if not request.reply:
            raise TransportError("message has no reply subject")
        await self.publish(request.reply, data, headers)

    async def key_value(self, bucket: str, *, replicas: int = 1, history: int = 1, ttl: float = 0,
                        placement: Sequence[str] = ()) -> KeyValueStore:
        from nats.errors import TimeoutError as NatsTimeout
        from nats.js.errors import BucketNotFoundError, NotFoundError

        js = self._client().jetstream()
        for attempt in range(1, KV_CREATE_ATTEMPTS + 1):
            try:
                return _NatsKV(await js.key_value(bucket))
            except (BucketNotFoundError, NotFoundError):
                pass
            try:
                await self._create_bucket(bucket, replicas, history, ttl, placement)
                break
            except NatsTimeout:
                # The answer to a creation can be lost while a young cluster's routes settle; the
                # request is idempotent (same config), and the bucket may exist by now anyway.
                if attempt == KV_CREATE_ATTEMPTS:
                    raise
                log.info("creating bucket %s: no answer from JetStream (try %d of %d); asking again",
                         bucket, attempt, KV_CREATE_ATTEMPTS)
        return _NatsKV(await js.key_value(bucket))

    async def _create_bucket(self, bucket: str, replicas: int, history: int, ttl: float,
                             placement: Sequence[str]) -> None:
        from nats.js import api

        # Creating a replicated bucket is a meta-group proposal plus the election of
        # the stream's own Raft group: seconds on a busy cluster, past nats-py's 5 s
        # default. It happens once per bucket, so waiting longer costs nothing later.
        slow_js = self._client().jetstream(timeout=max(15.0, 5.0 * replicas))
        if placement:
            # nats-py's create_key_value drops KeyValueConfig.placement, so the stream is made
            # here in the shape it would make (same subjects, rollups, per-key history).
            await slow_js.add_stream(api.StreamConfig(
                name=f"KV_{bucket}", subjects=[f"$KV.{bucket}.>"], allow_rollup_hdrs=True,
                deny_delete=True, discard=api.DiscardPolicy.NEW, duplicate_window=min(120.0, ttl or 120.0),
                max_age=ttl or None, max_consumers=-1, max_msgs=-1, max_msgs_per_subject=history,
                num_replicas=replicas, placement=api.Placement(tags=list(placement))))
        else:
            await slow_js.create_key_value(bucket=bucket, replicas=replicas, history=history, ttl=ttl or None)
