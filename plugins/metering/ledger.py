"""The region's usage ledger: SQLite in the state directory, one transaction per batch.

Tables:

- ``dedup(digest, day)``: one row per counted event, keyed by the 16-byte
  digest of its (source, id), kept ``dedup_retention`` (>= 32 days) after
  the day the stream stored it. An event whose digest is here is a duplicate.
- ``aggregates(tenant_key, meter, hour, data)``: per tenant, meter and hour,
  the folded :class:`~.aggregate.Aggregate` (encrypted with a keyring).
- ``uniques(tenant_key, meter, hour, member)``: UNIQUE_COUNT member digests.
- ``meta``: schema version, at-rest mode, watermark, lifetime counters.

:meth:`Ledger.apply` marks the dedup records and updates the aggregates in
the same transaction, so an event is counted exactly when its dedup record
exists; the caller acknowledges the stream messages only after it returns.
Every method blocks: call them off the event loop.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .aggregate import Aggregate, Partial, fold, member_digest
from .atrest import KEYRING, PLAINTEXT, AtRest
from .config import DAY
from .events import DEDUP_KEY_BYTES, UsageEvent, dedup_key, encode

SCHEMA_VERSION = 1
_CHUNK = 500  # host parameters per IN (...) query, well under SQLite's limit
_INSERT_SORTED = (
    # ?1 (> 0) dedup keys concatenated in ?2, all stored on day ?3.
    "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i + 1 < ?1) "
    f"INSERT OR IGNORE INTO dedup(digest, day) SELECT substr(?2, i * {DEDUP_KEY_BYTES} + 1, {DEDUP_KEY_BYTES}), ?3 FROM k")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dedup (digest BLOB PRIMARY KEY, day INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS aggregates (
    tenant_key TEXT NOT NULL, meter TEXT NOT NULL, hour INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (tenant_key, meter, hour)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uniques (
    tenant_key TEXT NOT NULL, meter TEXT NOT NULL, hour INTEGER NOT NULL, member BLOB NOT NULL,
    PRIMARY KEY (tenant_key, meter, hour, member)) WITHOUT ROWID;
"""

_COUNTERS = ("accepted", "duplicates", "dedup_rows")


class LedgerError(Exception):
    """The ledger cannot do what was asked; nothing was committed."""


class LedgerLocked(LedgerError):
    """The ledger is encrypted and no keyring is available to read or write it."""


class Ledger:
    def __init__(self, path: Path, at_rest: AtRest, *, region: str, retention: float,
                 clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.at_rest = at_rest
        self.region = region
        self.retention = retention
        self._clock = clock
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self.counters = dict.fromkeys(_COUNTERS, 0)
        self.watermark = 0.0
        self.pruned_at = 0.0
        self.migrated = 0

    # ------------------------------------------------------------ opening

    def open(self) -> None:
        """Create or open the ledger; migrate a plaintext ledger when a keyring is now available.

        Raises :class:`LedgerLocked` for an encrypted ledger without a keyring.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        try:
            # Another process may hold the write lock: the daemon reading a shard an ingest worker writes.
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit survives power loss, so an acknowledged message is never lost.
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA cache_size=-65536")
            conn.executescript(_SCHEMA)
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            version = int(meta.get("schema_version", SCHEMA_VERSION))
            if version != SCHEMA_VERSION:
                raise LedgerError(f"{self.path}: schema version {version}, this meshd reads {SCHEMA_VERSION}")
            mode = meta.get("at_rest")
            if mode == KEYRING and self.at_rest.mode == PLAINTEXT:
                raise LedgerLocked(f"{self.path} is encrypted but no keyring for 'metering' is available")
            self._conn = conn
            if mode is None:
                self._set_meta({"schema_version": SCHEMA_VERSION, "at_rest": self.at_rest.mode})
            elif mode == PLAINTEXT and self.at_rest.mode == KEYRING:
                self.migrated = self._encrypt_existing()
            for name in _COUNTERS:
                self.counters[name] = int(meta.get(name, 0))
            self.watermark = float(meta.get("watermark", 0.0))
            self.pruned_at = float(meta.get("pruned_at", 0.0))
        except BaseException:
            self._conn = None
            conn.close()
            raise

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LedgerError("the ledger is not open")
        return self._conn

    def _set_meta(self, values: dict[str, Any]) -> None:
        self._db().executemany(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [(k, str(v)) for k, v in values.items()],
        )

    def _context(self, tenant_key: str, meter: str, hour: int) -> dict[str, str]:
        return {"purpose": "metering", "region": self.region, "row": f"{tenant_key}|{meter}|{hour}"}

    def _read_row(self, tenant_key: str, meter: str, hour: int, data: str) -> dict[str, Any]:
        try:
            return json.loads(self.at_rest.open(data, self._context(tenant_key, meter, hour)))
        except ValueError as exc:
            raise LedgerError(f"aggregate row ({meter}, hour {hour}) does not decrypt: {exc}") from None

    def _encrypt_existing(self) -> int:
        """Rewrite a plaintext ledger under the keyring, in one transaction; the number of rows."""
        db = self._db()
        rows = db.execute("SELECT tenant_key, meter, hour, data FROM aggregates WHERE tenant_key LIKE 't:%'").fetchall()
        db.execute("PRAGMA secure_delete=ON")  # the plaintext rows' pages are zeroed, not left behind
        db.execute("BEGIN IMMEDIATE")
        try:
            tenants = set()
            for old_key, meter, hour, data in rows:
                tenant = old_key[2:]
                tenants.add(tenant)
                new_key = self.at_rest.tenant_key(tenant)
                payload = data.encode()  # a plaintext row is its JSON
                db.execute("DELETE FROM aggregates WHERE tenant_key = ? AND meter = ? AND hour = ?",
                           (old_key, meter, hour))
                db.execute("INSERT INTO aggregates(tenant_key, meter, hour, data) VALUES (?, ?, ?, ?)",
                           (new_key, meter, hour, self.at_rest.seal(payload, self._context(new_key, meter, hour))))
            for old_key, in db.execute("SELECT DISTINCT tenant_key FROM uniques WHERE tenant_key LIKE 't:%'").fetchall():
                db.execute("UPDATE uniques SET tenant_key = ? WHERE tenant_key = ?",
                           (self.at_rest.tenant_key(old_key[2:]), old_key))
            self._set_meta({"at_rest": KEYRING})
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        finally:
            db.execute("PRAGMA secure_delete=OFF")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return len(rows)

    # ------------------------------------------------------------ counting

    def apply(self, messages: Sequence[tuple[Sequence[UsageEvent], float]],
              keys: list[list[bytes]] | None = None) -> list[list[bool]]:
        """Count every event not counted before, in one transaction.

        ``messages`` are (events, stream timestamp) pairs; ``keys`` their
        events' :func:`~.events.dedup_key` if the caller has them already.
        Returns, per message, one flag per event: True if it was counted now,
        False if it was a duplicate (counted before, or earlier in this batch).
        """
        if keys is None:
            keys = [[dedup_key(e.source, e.id) for e in events] for events, _ in messages]
        days: dict[int, list[bytes]] = {}
        for ks, (_, ts) in zip(keys, messages):
            if ks:
                days.setdefault(int(ts // DAY), []).extend(ks)
        total = 0
        for ks in days.values():
            ks.sort()  # in key order: the inserts walk the B-tree once instead of jumping around it
            total += len(ks)
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                fresh = self._mark(db, days, total)
                flags, deltas, members = self._fold(messages, keys, fresh)
                self._write(db, deltas)
                if members:
                    db.executemany("INSERT OR IGNORE INTO uniques(tenant_key, meter, hour, member) "
                                   "VALUES (?, ?, ?, ?)", members)
                counted = sum(f.count(True) for f in flags)
                watermark = max([self.watermark, *(ts for _, ts in messages)])
                counters = {"accepted": self.counters["accepted"] + counted,
                            "duplicates": self.counters["duplicates"] + total - counted,
                            "dedup_rows": self.counters["dedup_rows"] + counted}
                self._set_meta({**counters, "watermark": watermark})
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self.counters.update(counters)
            self.watermark = watermark
        return flags

    def _mark(self, db: sqlite3.Connection, days: dict[int, list[bytes]], total: int) -> set[bytes] | None:
        """Insert the dedup records of events never seen; the set of digests inserted (None: all of them).

        ``days`` holds the sorted digests of each stream day. Each day's go
        in as one statement that splits their concatenation inside SQLite:
        half the time of binding a row at a time, and one long stretch
        without the GIL, during which the next batch is being validated.
        """
        db.execute("SAVEPOINT mark")
        before = db.total_changes
        for day, ks in days.items():
            db.execute(_INSERT_SORTED, (len(ks), b"".join(ks), day))
        if db.total_changes - before == total:
            db.execute("RELEASE mark")
            return None  # the common case: no duplicate anywhere
        db.execute("ROLLBACK TO mark")
        db.execute("RELEASE mark")
        rows = sorted((k, day) for day, ks in days.items() for k in ks)
        known: set[bytes] = set()
        distinct = list({k for k, _ in rows})
        for i in range(0, len(distinct), _CHUNK):
            chunk = distinct[i:i + _CHUNK]
            known.update(r[0] for r in db.execute(
                f"SELECT digest FROM dedup WHERE digest IN ({','.join('?' * len(chunk))})", chunk))
        fresh: dict[bytes, int] = {}
        for k, day in rows:
            if k not in known and k not in fresh:
                fresh[k] = day
        db.executemany("INSERT INTO dedup(digest, day) VALUES (?, ?)", fresh.items())
        return set(fresh)

    def _fold(self, messages: Sequence[tuple[Sequence[UsageEvent], float]], keys: list[list[bytes]],
              fresh: set[bytes] | None) -> tuple[list[list[bool]], dict[tuple[str, str, int], Aggregate],
                                                 list[tuple[str, str, int, bytes]]]:
        slots: dict[tuple[str, str, int], tuple[list[UsageEvent], list[bytes]]] = {}
        counted: set[bytes] = set()
        flags: list[list[bool]] = []
        for (events, _), ks in zip(messages, keys):
            pairs: Iterable[tuple[UsageEvent, bytes]]
            if fresh is None:  # the common case: every event is new, nothing to test per event
                flags.append([True] * len(events))
                pairs = zip(events, ks)
            else:
                out, kept = [], []
                for event, k in zip(events, ks):
                    new = k in fresh and k not in counted
                    out.append(new)
                    if new:
                        counted.add(k)
                        kept.append((event, k))
                flags.append(out)
                pairs = kept
            for event, k in pairs:
                slot = (event.tenant, event.meter, int(event.time // 3600))
                group = slots.get(slot)
                if group is None:
                    group = slots[slot] = ([], [])
                group[0].append(event)
                group[1].append(k)
        deltas = {slot: fold(events, ks) for slot, (events, ks) in slots.items()}
        members = [(self.at_rest.tenant_key(tenant), meter, hour, member_digest(tenant, meter, e.value))
                   for (tenant, meter, hour), (events, _) in slots.items() if type(events[0].value) is str
                   for e in events if type(e.value) is str]
        return flags, deltas, members

    def _write(self, db: sqlite3.Connection, deltas: dict[tuple[str, str, int], Aggregate]) -> None:
        for (tenant, meter, hour), delta in deltas.items():
            tk = self.at_rest.tenant_key(tenant)
            row = db.execute("SELECT data FROM aggregates WHERE tenant_key = ? AND meter = ? AND hour = ?",
                             (tk, meter, hour)).fetchone()
            if row is not None:
                current = Aggregate.from_json(self._read_row(tk, meter, hour, row[0]))
                current.merge(delta)
                delta = current
            data = self.at_rest.seal(encode({"tenant": tenant, **delta.to_json()}), self._context(tk, meter, hour))
            db.execute("INSERT INTO aggregates(tenant_key, meter, hour, data) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT(tenant_key, meter, hour) DO UPDATE SET data = excluded.data",
                       (tk, meter, hour, data))

    # ------------------------------------------------------------ reading

    def totals(self, tenant: str, start: float, end: float) -> dict[str, Partial]:
        """Each meter's partial total for ``tenant`` over hours in [start, end) (Unix seconds)."""
        first, last = int(start // 3600), int(-(-end // 3600))
        with self._lock:
            db = self._db()
            tk = self.at_rest.tenant_key(tenant)
            partials: dict[str, Partial] = {}
            for meter, hour, data in db.execute(
                    "SELECT meter, hour, data FROM aggregates WHERE tenant_key = ? AND hour >= ? AND hour < ?",
                    (tk, first, last)).fetchall():
                row = self._read_row(tk, meter, hour, data)
                if row.get("tenant") != tenant:
                    raise LedgerError(f"aggregate row ({meter}, hour {hour}) belongs to another tenant")
                part = partials.get(meter)
                if part is None:  # not setdefault: a Partial per row would be built and thrown away
                    part = partials[meter] = Partial()
                part.aggregate.merge(Aggregate.from_json(row))
            for meter, member in db.execute(
                    "SELECT DISTINCT meter, member FROM uniques WHERE tenant_key = ? AND hour >= ? AND hour < ?",
                    (tk, first, last)).fetchall():
                part = partials.setdefault(meter, Partial())
                assert part.members is not None
                part.members.add(member)
        for part in partials.values():
            part.distinct = len(part.members or ())
        return partials

    def rewrap(self, rewrap: Callable[[str, dict[str, str]], str], chunk: int = 500) -> int:
        """Move every aggregate row to the keyring's latest key version; the number of rows changed.

        ``rewrap(ciphertext, context)`` is the keyring's. Short transactions,
        so ingestion goes on; safe to run again after a crash halfway.
        """
        changed, after = 0, ("", "", -1)
        while True:
            with self._lock:
                db = self._db()
                rows = db.execute("SELECT tenant_key, meter, hour, data FROM aggregates "
                                  "WHERE (tenant_key, meter, hour) > (?, ?, ?) "
                                  "ORDER BY tenant_key, meter, hour LIMIT ?", (*after, chunk)).fetchall()
                if not rows:
                    return changed
                db.execute("BEGIN IMMEDIATE")
                try:
                    for tenant_key, meter, hour, data in rows:
                        new = rewrap(data, self._context(tenant_key, meter, hour))
                        if new != data:
                            db.execute("UPDATE aggregates SET data = ? WHERE tenant_key = ? AND meter = ? "
                                       "AND hour = ?", (new, tenant_key, meter, hour))
                            changed += 1
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            after = tuple(rows[-1][:3])

    def is_counted(self, source: str, event_id: str) -> bool:
        with self._lock:
            return self._db().execute("SELECT 1 FROM dedup WHERE digest = ?",
                                      (dedup_key(source, event_id),)).fetchone() is not None

    def prune(self, now: float | None = None) -> int:
        """Forget dedup records older than the retention; the number removed.

        The cut-off follows the watermark (the newest stream time counted),
        not only the clock: after a long outage the backlog is still checked
        against every record it could duplicate. There is no index on ``day``
        (it would halve the insert rate); the table is swept in 256 short
        transactions by the first byte of the digest instead.
        """
        now = self._clock() if now is None else now
        reference = min(now, self.watermark) if self.watermark else now
        cutoff_day = int((reference - self.retention) // DAY)
        removed = 0
        for first in range(256):
            lower, upper = bytes([first]), bytes([first + 1]) if first < 255 else b"\xff" * 17
            with self._lock:
                db = self._db()
                db.execute("BEGIN IMMEDIATE")
                try:
                    n = db.execute("DELETE FROM dedup WHERE digest >= ? AND digest < ? AND day < ?",
                                   (lower, upper, cutoff_day)).rowcount
                    if n:
                        self._set_meta({"dedup_rows": max(0, self.counters["dedup_rows"] - n)})
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                if n:
                    self.counters["dedup_rows"] = max(0, self.counters["dedup_rows"] - n)
            removed += n
        with self._lock:
            self._set_meta({"pruned_at": now})
        self.pruned_at = now
        return removed

    def stored_mode(self) -> str:
        """How the file says its rows are stored (``keyring`` or ``plaintext``), read from the file itself."""
        with self._lock:
            row = self._db().execute("SELECT value FROM meta WHERE key = 'at_rest'").fetchone()
        return str(row[0]) if row else self.at_rest.mode

    def reload_counters(self) -> None:
        """Read the lifetime counters again: another process (an ingest worker) may write this shard."""
        with self._lock:
            meta = dict(self._db().execute("SELECT key, value FROM meta").fetchall())
        for name in _COUNTERS:
            self.counters[name] = int(meta.get(name, 0))
        self.watermark = float(meta.get("watermark", 0.0))

    def stats(self) -> dict[str, Any]:
        size = 0
        for suffix in ("", "-wal"):
            try:
                size += os.stat(f"{self.path}{suffix}").st_size
            except FileNotFoundError:
                pass
        return {
            "path": str(self.path),
            "bytes": size,
            "at_rest": self.at_rest.mode,
            "accepted_total": self.counters["accepted"],
            "duplicates_total": self.counters["duplicates"],
            "dedup_records": self.counters["dedup_rows"],
            "watermark": self.watermark or None,
        }

