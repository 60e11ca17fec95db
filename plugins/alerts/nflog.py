"""The federation's notification log: one JetStream KV entry per (receiver, alert group).

Every daemon computes the same notification candidates; this log decides
which one reaches the receiver, the way Alertmanager's HA replicas share a
notification log, but with compare-and-set instead of gossip:

* the entry holds the last state notified (firing and resolved
  fingerprints), when, by which region, and whether delivery finished;
* a daemon whose candidate says something the entry does not
  (:func:`needs_update`) *claims* the next sequence number with a
  compare-and-set write; exactly one concurrent writer wins, the others
  re-read, find their news already claimed, and stand by;
* the claimer renews the entry while it delivers (so the revision keeps
  changing) and marks it ``done`` after; a standby that sees the revision
  unchanged for a whole lease presumes the claimer dead and takes the claim
  over with another compare-and-set, then delivers it;
* while an unfinished claim is alive, nobody else claims a newer state:
  one sender at a time per group keeps firing and resolved in order.

When the KV cannot be reached the caller sends anyway after a grace period
(a duplicate is better than a miss); see :mod:`.delivery`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import anyio

from meshd.transport import KeyExists, KeyValueStore, RevisionMismatch, Transport


class FenceUnavailable(Exception):
    """The notification log could not be read or written (KV unreachable, timeout...)."""


class Conflict(Exception):
    """Another daemon wrote the entry first; re-read it."""


@dataclass(frozen=True)
class LogEntry:
    """What the federation last told one receiver about one group."""

    seq: int
    firing: tuple[str, ...]
    resolved: tuple[str, ...]
    at: float
    """When this state was claimed (wall clock of the claimer); repeat_interval counts from here."""
    by: str
    """Region delivering (or that delivered) it."""
    done: bool = False
    silent: bool = False
    """Recorded without sending (a resolve for a receiver without send_resolved)."""
    content: dict[str, Any] = field(default_factory=dict)
    renewed: float = 0.0

    def to_bytes(self) -> bytes:
        doc = asdict(self)
        doc["firing"], doc["resolved"] = list(self.firing), list(self.resolved)
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> LogEntry:
        doc = json.loads(data)
        return cls(seq=int(doc["seq"]), firing=tuple(doc.get("firing", ())), resolved=tuple(doc.get("resolved", ())),
                   at=float(doc.get("at", 0)), by=str(doc.get("by", "")), done=bool(doc.get("done")),
                   silent=bool(doc.get("silent")), content=doc.get("content") or {},
                   renewed=float(doc.get("renewed", 0)))


def effective(content: dict[str, Any], entry: LogEntry | None) -> tuple[list[str], list[str]]:
    """(firing, resolved) a candidate tells the receiver, given what it was told before.

    A silenced alert counts as resolved only for a receiver that heard it
    firing; otherwise it is simply not mentioned.
    """
    firing = list(content.get("firing", ()))
    resolved = list(content.get("resolved", ()))
    told = set(entry.firing) if entry is not None else set()
    resolved += [fp for fp in content.get("silenced", {}) if fp in told and fp not in resolved]
    return firing, resolved


def needs_update(entry: LogEntry | None, firing: Sequence[str], resolved: Sequence[str], *,
                 send_resolved: bool, repeat_interval: float, now: float) -> bool:
    """Does the receiver need a notification, given what the log says it was told? (Alertmanager's rule.)"""
    if entry is None:
        return bool(firing)
    if not set(firing) <= set(entry.firing):
        return True  # something new is firing
    if not firing:
        return bool(entry.firing)  # everything it heard about is over: tell it once
    if send_resolved and not set(resolved) <= set(entry.resolved):
        return True
    return now - entry.at >= repeat_interval


class NotificationLog:
    """Reads and compare-and-set writes of the log in a KV bucket, each under a deadline."""

    def __init__(self, transport: Transport, bucket: str, *, replicas: int | str, ttl: float, timeout: float):
        self.transport = transport
        self.bucket, self.replicas, self.ttl, self.timeout = bucket, replicas, ttl, timeout
        self._kv: KeyValueStore | None = None

    async def _store(self) -> KeyValueStore:
        if self._kv is None:
            self._kv = await open_bucket(self.transport, self.bucket, self.replicas, ttl=self.ttl,
                                         timeout=self.timeout)
        return self._kv

    async def read(self, key: str) -> tuple[LogEntry | None, int]:
        """(entry, revision); revision 0 when there is no entry. :class:`FenceUnavailable` on any failure."""
        try:
            with anyio.fail_after(self.timeout):
                kv = await self._store()
                got = await kv.get(f"n.{key}")
        except Exception as exc:
            raise FenceUnavailable(f"{type(exc).__name__}: {exc}") from None
        if got is None:
            return None, 0
        try:
            return LogEntry.from_bytes(got.value), got.revision
        except (ValueError, KeyError, TypeError):
            return None, got.revision  # unreadable: overwrite it by revision like a missing one

    async def write(self, key: str, entry: LogEntry, revision: int) -> int:
        """Compare-and-set: write only if the entry is still at ``revision`` (0: absent). :class:`Conflict` if not."""
        try:
            with anyio.fail_after(self.timeout):
                kv = await self._store()
                if revision == 0:
                    return await kv.create(f"n.{key}", entry.to_bytes())
                return await kv.update(f"n.{key}", entry.to_bytes(), revision)
        except (KeyExists, RevisionMismatch):
            raise Conflict(key) from None
        except Exception as exc:
            raise FenceUnavailable(f"{type(exc).__name__}: {exc}") from None


async def open_bucket(transport: Transport, bucket: str, replicas: int | str, *, ttl: float = 0,
                      timeout: float = 5.0) -> KeyValueStore:
    """Open (or create) a KV bucket; ``replicas="auto"`` tries 3 and falls back to 1 on a single server."""
    with anyio.fail_after(timeout * 2):
        if replicas != "auto":
            return await transport.key_value(bucket, replicas=int(replicas), ttl=ttl)
        try:
            return await transport.key_value(bucket, replicas=3, ttl=ttl)
        except Exception:
            return await transport.key_value(bucket, replicas=1, ttl=ttl)
