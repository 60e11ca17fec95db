"""Rollouts in a JetStream KV bucket, moved only by compare-and-set.

``rollout.<service>`` holds the current (or last) rollout of a service;
``history.<service>.<id>`` a finished one, archived when the next starts.
Every change is a read, a pure change of the document, and an update at the
revision read: two daemons changing the same rollout never both win, and
the loser reads again and decides again on what is now there.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from meshd.transport import KeyExists, KeyValueStore, RevisionMismatch

from .record import Rollout

CAS_ATTEMPTS = 20


class Conflict(Exception):
    """The change cannot be made to the rollout as it is now (a code and a message)."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


def rollout_key(service: str) -> str:
    return f"rollout.{service}"


def history_key(service: str, rollout_id: str) -> str:
    return f"history.{service}.{rollout_id}"


def encode(rollout: Rollout) -> bytes:
    return json.dumps(rollout.to_json(), separators=(",", ":"), sort_keys=True).encode()


class RolloutStore:
    def __init__(self, kv: KeyValueStore):
        self.kv = kv

    async def get(self, service: str) -> tuple[Rollout, int] | None:
        entry = await self.kv.get(rollout_key(service))
        if entry is None:
            return None
        try:
            return Rollout.from_json(json.loads(entry.value)), entry.revision
        except (ValueError, TypeError, KeyError) as exc:
            # Kept as it is for an operator to look at: overwriting it would lose the only trace.
            raise Conflict("corrupt", f"the rollout record {rollout_key(service)} (revision {entry.revision}) "
                                      f"is not a rollout: {type(exc).__name__}: {exc}") from None

    async def services(self) -> list[str]:
        return sorted(k.split(".", 1)[1] for k in await self.kv.keys() if k.startswith("rollout."))

    async def history(self, service: str | None = None) -> list[Rollout]:
        out = []
        for key in await self.kv.keys():
            parts = key.split(".")
            if parts[0] == "history" and (service is None or parts[1] == service):
                entry = await self.kv.get(key)
                if entry is not None:
                    out.append(Rollout.from_json(json.loads(entry.value)))
        current = [r for s in await self.services() if service in (None, s) if (got := await self.get(s))
                   for r in [got[0]] if not r.active]
        return sorted(out + current, key=lambda r: r.started)

    async def start(self, rollout: Rollout) -> Rollout:
        """Store a new rollout; :class:`Conflict` ``running`` while another of the same service is active."""
        key = rollout_key(rollout.service)
        for _ in range(CAS_ATTEMPTS):
            current = await self.get(rollout.service)
            try:
                if current is None:
                    await self.kv.create(key, encode(rollout))
                    return rollout
                previous, revision = current
                if previous.active:
                    raise Conflict("running", f"rollout {previous.id} of {previous.service} (version "
                                              f"{previous.version}) is {previous.state}: one at a time")
                await self.kv.put(history_key(previous.service, previous.id), encode(previous))
                await self.kv.update(key, encode(rollout), revision)
                return rollout
            except (KeyExists, RevisionMismatch):
                continue
        raise Conflict("busy", f"rollout of {rollout.service}: the record kept changing, try again")

    async def mutate(self, service: str, change: Callable[[Rollout], bool]) -> Rollout | None:
        """Apply ``change`` (returns False: nothing to do) at the revision read; retried on conflict.

        Returns the stored rollout, or None when ``change`` made no change. ``change`` may raise
        :class:`Conflict` to refuse.
        """
        for _ in range(CAS_ATTEMPTS):
            current = await self.get(service)
            if current is None:
                raise Conflict("unknown", f"no rollout of {service}")
            rollout, revision = current
            if not change(rollout):
                return None
            try:
                await self.kv.update(rollout_key(service), encode(rollout), revision)
                return rollout
            except RevisionMismatch:
                continue
        raise Conflict("busy", f"rollout of {service}: the record kept changing, try again")
