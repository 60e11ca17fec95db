"""``Idempotency-Key`` for POSTs: a retried request gets the first answer, never a second effect.

Records live in a JetStream KV bucket with a TTL (24 h by default), keyed by
partner and a SHA-256 of the header's value, so a retry that lands in
another region finds the first answer too. The first request claims the
key with a KV create (of any number of concurrent requests exactly one
wins); the others get ``409`` while it runs and its answer after. A claim
whose request died with its daemon is taken over after ``STALE`` seconds.
A request that was refused (4xx) or failed (5xx) changed nothing and
releases its claim: a corrected retry with the same key runs.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from meshd.transport import KeyExists, KeyValueStore, RevisionMismatch

from .problems import Problem

STALE = 30.0
MAX_KEY = 255


@dataclass(frozen=True)
class Stored:
    status: int
    body: bytes
    content_type: str


def record_key(partner: str, idempotency_key: str) -> str:
    return f"{partner}.{hashlib.sha256(idempotency_key.encode()).hexdigest()}"


def fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


class IdempotencyStore:
    def __init__(self, kv: KeyValueStore):
        self.kv = kv

    async def run(self, partner: str, idempotency_key: str, print_: str,
                  handler: Callable[[], Awaitable[Stored]]) -> tuple[Stored, bool]:
        """``handler``'s answer, or the stored one of an earlier request with this key; True when replayed."""
        if not idempotency_key or len(idempotency_key) > MAX_KEY or not idempotency_key.isprintable():
            raise Problem("validation", field="Idempotency-Key", reason="idempotency_key", high=MAX_KEY)
        key = record_key(partner, idempotency_key)
        pending = json.dumps({"state": "pending", "fingerprint": print_, "at": time.time()}).encode()
        try:
            await self.kv.create(key, pending)
        except KeyExists:
            entry = await self.kv.get(key)
            if entry is None:  # expired or released between the two calls: claim it now
                return await self.run(partner, idempotency_key, print_, handler)
            record = json.loads(entry.value)
            if record.get("fingerprint") != print_:
                raise Problem("idempotency_conflict", field="Idempotency-Key") from None
            if record.get("state") == "done":
                return Stored(int(record["status"]), record["body"].encode(), record["content_type"]), True
            if time.time() - float(record.get("at", 0)) < STALE:
                raise Problem("conflict", field="Idempotency-Key") from None
            try:
                await self.kv.update(key, pending, entry.revision)
            except RevisionMismatch:
                raise Problem("conflict", field="Idempotency-Key") from None
        try:
            answer = await handler()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.kv.delete(key)
            raise
        if answer.status >= 400:
            await self.kv.delete(key)
        else:
            await self.kv.put(key, json.dumps({"state": "done", "fingerprint": print_, "status": answer.status,
                                               "body": answer.body.decode(), "content_type": answer.content_type,
                                               "at": time.time()}).encode())
        return answer, False
