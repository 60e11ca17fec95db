"""The JetStream KV bucket that fences decisions: one create-only key per (region, term) slot."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio

from meshd.transport import KeyExists, KeyValueStore

from .records import parse_slot_key

if TYPE_CHECKING:
    from .engine import FailoverEngine

KV_READ_TIMEOUT = 1.0
KV_WRITE_TIMEOUT = 2.0
KV_LIST_TIMEOUT = 5.0
"""Short: a read that hangs (a bucket just created by another region, a leader election after a node
restart) is cheaper to retry on the next tick than to wait out nats-py's 5 s. A listing streams every
key of the bucket, so it gets longer."""


class CommitStore:
    """Opens the bucket, reads slots, creates them once; keeps ``available`` (and the gauge) honest."""

    def __init__(self, engine: FailoverEngine):
        self.engine = engine
        self.kv: KeyValueStore | None = None
        self.replicas: int | None = None
        self.available = False
        m = engine.daemon.metrics
        self.m_commits = m.counter("failover_commit_attempts_total",
                                   "KV creates this daemon attempted for a slot, by result", ["result"])
        self.m_kv = m.gauge("failover_kv_up", "1 while the failover KV bucket answers")
        self.m_errors = m.counter("failover_kv_errors_total",
                                  "Failover KV operations that failed, by operation (logged once per outage)", ["op"])

    @property
    def bucket(self) -> str:
        return self.engine.cfg.kv.bucket

    def _auto_replicas(self) -> int:
        setting = self.engine.cfg.kv.replicas
        if setting != "auto":
            return int(setting)
        # nats-py keeps the server's INFO, which names the cluster of a clustered server. On a cluster
        # R3 it is: one too small for it fails loudly (and is retried) rather than quietly getting R1.
        info = getattr(getattr(self.engine.daemon.transport, "nc", None), "_server_info", None) or {}
        return 3 if info.get("cluster") else 1

    async def open(self) -> bool:
        """True once the bucket is open (created if need be); never while isolated."""
        if self.kv is not None:
            return True
        if self.engine.isolated:
            return False
        replicas = self._auto_replicas()
        try:
            with anyio.fail_after(KV_WRITE_TIMEOUT):
                self.kv = await self.engine.daemon.transport.key_value(self.bucket, replicas=replicas)
        except Exception as exc:
            self.failed("open", exc)
            return False
        self.replicas = replicas
        self.answered()
        return True

    def answered(self) -> None:
        self.available = True
        self.m_kv.set(1)
        self.engine.states.set("kv", "ok", "KV bucket %s available", self.bucket)

    def failed(self, op: str, exc: BaseException) -> None:
        self.m_errors.labels(op).inc()
        self.available = False
        self.m_kv.set(0)
        self.engine.states.set("kv", "down", "KV bucket %s unavailable (%s: %s: %s): no decision can be committed "
                               "until it answers", self.bucket, op, type(exc).__name__, exc, level=logging.WARNING)

    async def get(self, key: str) -> bytes | None:
        """The value of ``key``, None if absent; raises (after marking the bucket down) if it does not answer."""
        assert self.kv is not None
        try:
            with anyio.fail_after(KV_READ_TIMEOUT):
                entry = await self.kv.get(key)
        except Exception as exc:
            self.failed("get", exc)
            raise
        self.answered()
        return None if entry is None else entry.value

    async def keys(self) -> list[str]:
        """Every key in the bucket; raises (after marking the bucket down) if it does not answer."""
        assert self.kv is not None
        try:
            with anyio.fail_after(KV_LIST_TIMEOUT):
                keys = await self.kv.keys()
        except Exception as exc:
            self.failed("keys", exc)
            raise
        self.answered()
        return keys

    async def create(self, key: str, value: bytes) -> bool:
        """Create ``key`` if it does not exist; True if this call created it.

        False when the slot was already filled or the bucket failed: the caller reads the slot either
        way, since a create may land before its error.
        """
        assert self.kv is not None
        try:
            with anyio.fail_after(KV_WRITE_TIMEOUT):
                await self.kv.create(key, value)
        except KeyExists:
            self.m_commits.labels("exists").inc()
            return False
        except Exception as exc:
            self.m_commits.labels("error").inc()
            self.failed("create", exc)
            return False
        self.m_commits.labels("created").inc()
        self.answered()
        return True


def keys_in(keys: list[str]) -> dict[str, list[int]]:
    """Slot keys of a bucket listing, grouped by region (for tools and tests)."""
    out: dict[str, list[int]] = {}
    for key in keys:
        parsed = parse_slot_key(key)
        if parsed is not None:
            out.setdefault(parsed[0], []).append(parsed[1])
    return {r: sorted(ts) for r, ts in out.items()}
