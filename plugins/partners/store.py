"""Partners and their API keys in the JetStream KV bucket ``meshd_partners``, watched by every region.

Keys of the bucket::

    partner.<partner_id>   {"id", "name", "created"}
    key.<key_id>           {"key_id", "partner", "role", "hash", "created", "revoked"}

Every daemon with the plugin keeps a copy of the bucket in memory, current
through a KV watch, so a request is checked with no I/O and a key revoked in
one region is refused by every region as soon as the watch delivers the
change (milliseconds on a healthy bus). A revoked key keeps its record
(``revoked`` set) so that ``key list`` shows what happened.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from meshd.transport import KeyExists, KeyValueStore

from .apikeys import ROLES, VerifiedCache, format_key, hash_secret, new_key_id, new_secret, parse_key, verify_secret

PARTNER_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


class StoreError(Exception):
    """A partner or key operation refused: ``code`` says why (``exists``, ``unknown_partner``...)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Partner:
    id: str
    name: str
    created: float


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    partner: str
    role: str
    hash: str
    created: float
    revoked: float | None = None

    def public(self) -> dict[str, Any]:
        """What an operator may see of a key: never its hash."""
        return {"key_id": self.key_id, "partner": self.partner, "role": self.role, "created": self.created,
                "revoked": self.revoked}


def partner_id_for(name: str) -> str:
    """The id a partner named ``name`` gets: lowercase, runs of other characters as one '-'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40]


class PartnerStore:
    """The bucket and this daemon's in-memory copy of it."""

    def __init__(self, kv: KeyValueStore, log: logging.Logger | None = None):
        self.kv = kv
        self.log = log or logging.getLogger("meshd.partners")
        self.partners: dict[str, Partner] = {}
        self.keys: dict[str, ApiKey] = {}
        self.verified = VerifiedCache()
        self.loaded = anyio.Event()
        self.on_change: list[Callable[[str], None]] = []
        self.bad_records = 0

    # ------------------------------------------------------------ the in-memory copy

    def apply(self, key: str, value: bytes | None) -> None:
        """One bucket change (``value`` None: deleted); a bad record is counted and skipped."""
        kind, _, ident = key.partition(".")
        try:
            data = json.loads(value) if value else None
            if kind == "partner":
                if data is None:
                    self.partners.pop(ident, None)
                else:
                    self.partners[ident] = Partner(str(data["id"]), str(data["name"]), float(data["created"]))
            elif kind == "key":
                self.verified.forget(ident)
                if data is None:
                    self.keys.pop(ident, None)
                else:
                    self.keys[ident] = ApiKey(str(data["key_id"]), str(data["partner"]), str(data["role"]),
                                              str(data["hash"]), float(data["created"]),
                                              None if data.get("revoked") is None else float(data["revoked"]))
        except (ValueError, KeyError, TypeError) as exc:
            self.bad_records += 1
            self.log.error("partner store: record %s is unreadable, skipped: %s", key, type(exc).__name__)
            return
        for callback in self.on_change:
            callback(key)

    async def load(self) -> None:
        """Read the whole bucket once (the CLI path; a daemon watches instead)."""
        for key in await self.kv.keys():
            entry = await self.kv.get(key)
            self.apply(key, entry.value if entry else None)
        self.loaded.set()

    async def watch(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Keep the copy current for ever; ``task_status.started()`` once the bucket has been read whole."""
        from nats.errors import TimeoutError as NatsTimeout

        raw = getattr(self.kv, "_kv", None)
        if raw is None:  # a transport without a watch (the in-memory one): poll instead
            await self.load()
            task_status.started()
            while True:
                await anyio.sleep(0.2)
                await self._reload_all()
        watcher = await raw.watchall()
        started = False
        try:
            while True:
                try:
                    entry = await watcher.updates(timeout=5.0)
                except (NatsTimeout, TimeoutError):
                    continue
                if entry is None:  # the end of the initial values
                    if not started:
                        started = True
                        self.loaded.set()
                        task_status.started()
                    continue
                deleted = entry.operation in ("DEL", "PURGE") or entry.value is None
                self.apply(entry.key, None if deleted else entry.value)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                try:
                    await watcher.stop()
                except Exception:  # the connection is already closed (the daemon is stopping): nothing to stop
                    pass

    async def _reload_all(self) -> None:
        keys = set(await self.kv.keys())
        for key in keys:
            entry = await self.kv.get(key)
            self.apply(key, entry.value if entry else None)
        for gone in ({f"partner.{p}" for p in self.partners} | {f"key.{k}" for k in self.keys}) - keys:
            self.apply(gone, None)

    # ------------------------------------------------------------ checks (no I/O)

    async def authenticate(self, bearer: str, partner_id: str) -> ApiKey | None:
        """The live key ``bearer`` is, when it is one of ``partner_id``'s; else None (never says why).

        A secret already verified is checked in constant time with no I/O; a
        new one is hashed with argon2id in a worker thread (tens of ms), never
        on the event loop.
        """
        parsed = parse_key(bearer)
        if parsed is None:
            return None
        record = self.keys.get(parsed.key_id)
        if record is None or record.revoked is not None or record.partner != partner_id:
            return None
        if self.verified.matches(parsed.key_id, parsed.secret):
            return record
        if not await anyio.to_thread.run_sync(verify_secret, record.hash, parsed.secret):
            return None
        if self.keys.get(parsed.key_id) is not record:  # changed (revoked?) while we were hashing
            return None
        self.verified.remember(parsed.key_id, parsed.secret)
        return record

    # ------------------------------------------------------------ operator writes

    async def add_partner(self, name: str, partner_id: str | None = None) -> Partner:
        pid = partner_id or partner_id_for(name)
        if not PARTNER_ID_RE.match(pid):
            raise StoreError("bad_id", f"partner id {pid!r} must be 1-40 of a-z, 0-9 and '-', starting with a "
                                       "letter or digit")
        if not name.strip() or len(name) > 100:
            raise StoreError("bad_name", "a partner name is 1 to 100 characters")
        partner = Partner(pid, name.strip(), round(time.time(), 3))
        body = json.dumps({"id": partner.id, "name": partner.name, "created": partner.created}).encode()
        try:
            await self.kv.create(f"partner.{pid}", body)
        except KeyExists:
            raise StoreError("exists", f"partner {pid!r} exists already") from None
        self.apply(f"partner.{pid}", body)
        return partner

    async def create_key(self, partner_id: str, role: str) -> tuple[ApiKey, str]:
        """A new key of ``partner_id``; returns the record and the full key, which is not kept anywhere."""
        if role not in ROLES:
            raise StoreError("bad_role", f"role {role!r} is not one of {', '.join(ROLES)}")
        if await self.kv.get(f"partner.{partner_id}") is None:
            raise StoreError("unknown_partner", f"no partner {partner_id!r} (add it with `meshd partners add`)")
        key_id, secret = new_key_id(), new_secret()
        record = ApiKey(key_id, partner_id, role, await anyio.to_thread.run_sync(hash_secret, secret),
                        round(time.time(), 3))
        body = self._encode(record)
        await self.kv.create(f"key.{key_id}", body)
        self.apply(f"key.{key_id}", body)
        return record, format_key(key_id, secret)

    async def revoke_key(self, partner_id: str, key_id: str) -> ApiKey:
        entry = await self.kv.get(f"key.{key_id}")
        if entry is None:
            raise StoreError("unknown_key", f"no key {key_id!r}")
        self.apply(entry.key, entry.value)
        record = self.keys.get(key_id)
        if record is None or record.partner != partner_id:
            raise StoreError("unknown_key", f"partner {partner_id!r} has no key {key_id!r}")
        if record.revoked is None:
            record = ApiKey(**{**record.__dict__, "revoked": round(time.time(), 3)})
            body = self._encode(record)
            await self.kv.put(f"key.{key_id}", body)
            self.apply(f"key.{key_id}", body)
        return record

    def keys_of(self, partner_id: str) -> list[ApiKey]:
        return sorted((k for k in self.keys.values() if k.partner == partner_id), key=lambda k: k.created)

    @staticmethod
    def _encode(record: ApiKey) -> bytes:
        return json.dumps({"key_id": record.key_id, "partner": record.partner, "role": record.role,
                           "hash": record.hash, "created": record.created, "revoked": record.revoked}).encode()
