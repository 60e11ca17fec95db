"""Inbound membership messages: validated, applied, answered; the malformed counted and dropped."""

from __future__ import annotations

import time

from meshd.envelope import Envelope
from meshd.transport import Message

from . import wire
from .base import ALIVE, LEFT, MAX_CONCURRENT_HELPS, SwimBase
from .table import Claim


class Inbound(SwimBase):
    """Handlers of the ``swim`` and ``leave`` subscriptions."""

    def _count(self, direction: str, type: str) -> None:
        self.m_messages.labels(direction, type).inc()

    def _bad(self, env: Envelope, exc: wire.BadMessage) -> None:
        self.m_bad.labels(exc.reason).inc()
        now = time.monotonic()
        if now - self._bad_logged.get(env.sender, -1e9) > 60:  # one line per peer per minute
            self._bad_logged[env.sender] = now
            self.log.warning("dropped a malformed %s message from %s: %s", env.type, env.sender, exc)

    def _claims(self, env: Envelope, key: str) -> list[Claim]:
        """Decode the claims of a message; count (and skip) claims about regions we do not know."""
        skipped: list[str] = []
        claims = wire.decode_claims(env.body, key, self.regions, skipped)
        if skipped:
            self._bad(env, wire.BadMessage("unknown_region", f"{len(skipped)} claim(s) skipped: {skipped[0]}"))
        return claims

    async def _on_direct(self, env: Envelope, msg: Message) -> None:
        self._count("in", env.type)
        try:
            if env.type == "ping":
                await self._handle_ping(env, msg)
            elif env.type == "ping-req":
                await self._handle_ping_req(env, msg)
            elif env.type == "sync":
                await self._handle_sync(env, msg)
            elif env.type == "gossip":
                await self._merge(self._claims(env, "g"), env.sender)
                self._touch(env.sender)
            else:
                raise wire.BadMessage("unknown_type", f"unknown message type {env.type!r}")
        except wire.BadMessage as exc:
            self._bad(env, exc)

    async def _on_broadcast(self, env: Envelope, msg: Message) -> None:
        if env.sender == self.region:
            if env.type == "echo":
                waiter = self._echo_waiters.get(str(env.body.get("n")))
                if waiter is not None:
                    waiter.set()
            return
        if env.type == "echo":
            return  # another daemon's own round trip
        self._count("in", env.type)
        try:
            if env.type != "event":
                raise wire.BadMessage("unknown_type", f"unknown broadcast type {env.type!r}")
            claims = self._claims(env, "g")
        except wire.BadMessage as exc:
            self._bad(env, exc)
            return
        self._touch(env.sender)
        # What a daemon broadcasts it says in its own name.
        await self._merge([Claim(c.region, c.state, c.incarnation, env.sender if c.state != ALIVE else c.source,
                                 c.health) for c in claims], env.sender, broadcast=True)

    async def _on_leave(self, env: Envelope, msg: Message) -> None:
        """The core's signed leave (SIGTERM): the sender is ``left``, never ``dead``."""
        self._count("in", "leave")
        current = self.table.get(env.sender)
        await self._merge([Claim(env.sender, LEFT, current.incarnation if current else 0, env.sender)],
                          env.sender)

    async def _handle_ping(self, env: Envelope, msg: Message) -> None:
        if self.leaving:
            return
        inc, health = wire.sender_life(env.body)
        view = wire.decode_view(env.body)
        claims = self._claims(env, "g")
        await self._heard(env.sender, inc, health)
        if view is not None:
            await self._check_view(view, env.sender)
        await self._merge(claims, env.sender)
        self._count("out", "ack")
        await self.bus.reply(msg, "ack", self._life(env.sender))

    async def _handle_ping_req(self, env: Envelope, msg: Message) -> None:
        if self.leaving:
            return
        inc, health = wire.sender_life(env.body)
        target = wire.region(env.body.get("target"), "target", self.regions)
        claims = self._claims(env, "g")
        await self._heard(env.sender, inc, health)
        await self._merge(claims, env.sender)
        if target == self.region:
            self._count("out", "ack")
            await self.bus.reply(msg, "ack", {"target": target, "inc": self.incarnation, "h": self.health})
            return
        if target == env.sender or self._helping >= MAX_CONCURRENT_HELPS:
            self._count("out", "nack")
            await self.bus.reply(msg, "nack", {"target": target})
            return
        self._helping += 1
        self.daemon.spawn(self._help, msg, target, name="membership-ping-req")

    async def _help(self, msg: Message, target: str) -> None:
        try:
            inc = await self._ping(target, self.awareness.scale(self.timing.probe_timeout))
            if inc is None:
                self._count("out", "nack")
                await self.bus.reply(msg, "nack", {"target": target})
            else:
                m = self.table.get(target)
                self._count("out", "ack")
                await self.bus.reply(msg, "ack", {"target": target, "inc": inc, "h": m.health if m else None})
        finally:
            self._helping -= 1

    async def _handle_sync(self, env: Envelope, msg: Message) -> None:
        await self._absorb_sync(env)
        body = {"inc": self.incarnation, "h": self.health, "members": wire.encode_claims(self._full_state())}
        self._count("out", "sync")
        await self.bus.reply(msg, "sync", body)

    async def _absorb_sync(self, env: Envelope) -> None:
        try:
            inc, health = wire.sender_life(env.body)
            view = wire.decode_view(env.body)
            claims = self._claims(env, "members")
        except wire.BadMessage as exc:
            self._bad(env, exc)
            return
        await self._heard(env.sender, inc, health)
        if view is not None:
            await self._check_view(view, env.sender)
        await self._merge([c for c in claims if c.region != env.sender], env.sender)
