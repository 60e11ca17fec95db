"""The federation bus: signed envelopes on namespaced subjects.

Subjects read ``meshd.<federation>.<kind>.<sender>[.<target>]``. The sender
token lets NATS permissions restrict each region's user to publishing as
itself; the envelope's signature proves it again end to end. Every inbound
message goes through :class:`~meshd.envelope.Opener` before any plugin sees
it; what it rejects is counted by reason and dropped.

Handlers never take the daemon down: an exception in one is logged with the
message kind and counted in ``meshd_handler_errors_total``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio

from .backoff import Backoff
from .envelope import Envelope, Opener, Rejected, Sealer
from .metrics import Metrics
from .transport import Message, RequestTimeout, Subscription, Transport, TransportError

EnvelopeHandler = Callable[[Envelope, Message], Awaitable[None]]


def subject(federation: str, kind: str, sender: str, target: str | None = None) -> str:
    base = f"meshd.{federation}.{kind}.{sender}"
    return f"{base}.{target}" if target else base



class NoAnswer(Exception):
    """A region's answer that did not come or said no; ``str()`` is the reason to show (see :meth:`Bus.ask`)."""

class Bus:
    """Signed publish/subscribe/request between the daemons of one federation."""

    def __init__(self, transport: Transport, sealer: Sealer, opener: Opener, metrics: Metrics,
                 log: logging.Logger | None = None):
        self.transport = transport
        self.sealer, self.opener = sealer, opener
        self.federation, self.region = sealer.federation, sealer.region
        self.log = log or logging.getLogger("meshd.bus")
        self._connected = anyio.Event()
        self._rejected = metrics.counter("envelopes_rejected_total", "Inbound messages dropped, by reason", ["reason"])
        self._received = metrics.counter("envelopes_received_total", "Verified inbound envelopes, by kind", ["kind"])
        self._sent = metrics.counter("envelopes_sent_total", "Envelopes published, by kind", ["kind"])
        self._handler_errors = metrics.counter(
            "handler_errors_total", "Exceptions raised by bus message handlers, by kind", ["kind"]
        )
        self._send_errors = metrics.counter("envelopes_send_failed_total", "Publishes that failed, by kind", ["kind"])
        # Pre-create the rejection series so /metrics shows zeros, not nothing.
        from .envelope import Reason

        for reason in Reason:
            self._rejected.labels(reason.value)

    # -- subjects

    def subject(self, kind: str, target: str | None = None, sender: str | None = None) -> str:
        return subject(self.federation, kind, sender or self.region, target)

    # -- outbound

    def seal(self, type: str, body: Mapping[str, Any]) -> tuple[bytes, dict[str, str]]:
        return self.sealer.seal(type, body)

    async def publish(self, kind: str, type: str, body: Mapping[str, Any], target: str | None = None) -> bool:
        """Publish a signed envelope as this region; False (and counted) if the bus is down."""
        data, headers = self.sealer.seal(type, body)
        try:
            await self.transport.publish(self.subject(kind, target), data, headers)
        except TransportError:
            self._send_errors.labels(kind).inc()
            return False
        self._sent.labels(kind).inc()
        return True

    async def request(self, kind: str, type: str, body: Mapping[str, Any], target: str,
                      timeout: float) -> Envelope:
        """Ask ``target`` and return its verified reply envelope.

        Raises :class:`~meshd.transport.RequestTimeout` when no valid reply
        comes in time, and :class:`Rejected` when the reply is not signed by
        ``target``.
        """
        data, headers = self.sealer.seal(type, body)
        self._sent.labels(kind).inc()
        reply = await self.transport.request(self.subject(kind, target), data, headers, timeout)
        try:
            env = self.opener.open(reply.data, reply.headers, subject_sender=target)
        except Rejected as exc:
            self._rejected.labels(exc.reason.value).inc()
            raise
        self._received.labels(kind).inc()
        return env

    async def ask(self, kind: str, type: str, body: Mapping[str, Any], target: str,
                  timeout: float) -> dict[str, Any]:
        """The body of ``target``'s ``{"ok": true, ...}`` answer; :class:`NoAnswer` saying why in words otherwise.

        For federation-wide queries that name each region that did not answer
        (``meshd usage``, ``meshd audit``): every way a request can fail (nobody
        listening, a timeout, a reply not signed by ``target``, the bus down, a
        refusal) becomes one reason to show.
        """
        try:
            reply = await self.request(kind, type, body, target=target, timeout=timeout)
        except RequestTimeout as exc:
            if "no responders" in str(exc):
                raise NoAnswer("no answer: nothing listens (its daemon is down or off the bus)") from None
            raise NoAnswer(f"no answer within {timeout:g}s") from None
        except Rejected as exc:
            raise NoAnswer(f"answer rejected ({exc.reason.value})") from None
        except TransportError as exc:
            raise NoAnswer(f"bus unavailable ({exc})") from None
        if not reply.body.get("ok"):
            raise NoAnswer(str(reply.body.get("error") or "refused"))
        return dict(reply.body)

    async def reply(self, request: Message, type: str, body: Mapping[str, Any]) -> None:
        data, headers = self.sealer.seal(type, body)
        try:
            await self.transport.respond(request, data, headers)
        except TransportError:
            self._send_errors.labels("reply").inc()

    # -- inbound

    async def subscribe(self, kind: str, handler: EnvelopeHandler, *, sender: str = "*",
                        target: str | None = None, include_self: bool = False,
                        queue: str | None = None) -> Subscription:
        """Call ``handler(envelope, message)`` for every verified envelope of ``kind``.

        ``target`` narrows to messages addressed to one region (``self.region``
        for "to me"); by default only untargeted messages arrive. Messages
        this region sent itself are skipped unless ``include_self``.
        """
        pattern = subject(self.federation, kind, sender, target)
        prefix_len = len(f"meshd.{self.federation}.{kind}.")

        async def on_message(msg: Message) -> None:
            sender_token = msg.subject[prefix_len:].split(".", 1)[0]
            if sender_token == self.region and not include_self:
                return
            try:
                env = self.opener.open(msg.data, msg.headers, subject_sender=sender_token)
            except Rejected as exc:
                self._rejected.labels(exc.reason.value).inc()
                self.log.debug("dropped %s message on %s: %s", kind, msg.subject, exc)
                return
            except Exception:
                self._rejected.labels("undecodable").inc()
                self.log.exception("dropped %s message on %s: decoder error", kind, msg.subject)
                return
            self._received.labels(kind).inc()
            try:
                await handler(env, msg)
            except Exception as exc:
                self._handler_errors.labels(kind).inc()
                self.log.error("handler for %s from %s failed: %s: %s", env.type, env.sender,
                               type(exc).__name__, exc, exc_info=exc)

        return await self.transport.subscribe(pattern, on_message, queue=queue)

    # -- connection state

    @property
    def connected(self) -> bool:
        return self.transport.connected

    async def wait_connected(self) -> None:
        await self._connected.wait()

    def _set_connected(self, connected: bool) -> None:
        if connected:
            self._connected.set()
        else:
            self._connected = anyio.Event()

    async def connect(self, *, backoff_initial: float = 0.2, backoff_max: float = 10.0,
                      clock: Callable[[], float] = time.monotonic) -> int:
        """Connect, retrying for ever with backoff and one log line per attempt; return the attempt count."""
        backoff, attempt = Backoff(backoff_initial, backoff_max), 0
        while True:
            attempt += 1
            try:
                await self.transport.connect()
            except TransportError as exc:
                delay = backoff.next()
                self.log.warning("bus connect attempt %d failed: %s; retrying in %.1fs", attempt, exc, delay)
                await anyio.sleep(delay)
                continue
            self._set_connected(True)
            self.log.info("connected to the bus after %d attempt(s)", attempt)
            return attempt
