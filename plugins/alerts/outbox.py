"""The durable outbox: every notification is in SQLite (fsync'd) before anyone tries to deliver it.

A row is one notification for one receiver about one alert group. It is
first a *candidate* (this daemon's view of what the receiver should hear);
the delivery worker then either finds that the federation already told the
receiver (``skipped``), claims it in the federation's notification log and
delivers it (``sent`` / ``failed``), or sees another daemon take it over
(``superseded``). Rows of one receiver and group are handled strictly in
order: claimed rows by claim sequence, then candidates by arrival.

All methods are blocking; :class:`AsyncOutbox` runs them in one worker
thread at a time, off the event loop.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    key         TEXT NOT NULL,
    receiver    TEXT NOT NULL,
    group_key   TEXT NOT NULL,
    content     TEXT NOT NULL,
    state       TEXT NOT NULL DEFAULT 'pending',
    outcome     TEXT,
    claim_seq   INTEGER,
    origin      TEXT NOT NULL DEFAULT 'flush',
    targets     TEXT NOT NULL DEFAULT '{}',
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    done_at     REAL,
    last_error  TEXT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (state, key, id);
-- What this daemon told a receiver while the notification log was unreachable: merged
-- into the log once it is back, so the log knows what went out (the resolve that
-- follows an unfenced page then goes out too).
CREATE TABLE IF NOT EXISTS unfenced_told (
    key         TEXT PRIMARY KEY,
    firing      TEXT NOT NULL,
    resolved    TEXT NOT NULL,
    at          REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS silences (
    id          TEXT PRIMARY KEY,
    doc         TEXT NOT NULL,
    updated_at  REAL NOT NULL,
    synced      INTEGER NOT NULL DEFAULT 0
);
"""

PENDING = "pending"
DONE = "done"


@dataclass
class Row:
    """One outbox row as the worker handles it."""

    id: int
    key: str
    receiver: str
    group_key: str
    content: dict[str, Any]
    state: str = PENDING
    outcome: str | None = None
    claim_seq: int | None = None
    origin: str = "flush"
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    attempts: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    done_at: float | None = None
    last_error: str | None = None

    @property
    def status(self) -> str:
        return "firing" if self.content.get("firing") else "resolved"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "receiver": self.receiver, "group_key": self.group_key, "status": self.status,
                "state": self.state, "outcome": self.outcome, "claim_seq": self.claim_seq, "origin": self.origin,
                "attempts": self.attempts, "created_at": self.created_at, "done_at": self.done_at,
                "last_error": self.last_error}


def _row(r: sqlite3.Row) -> Row:
    return Row(id=r["id"], key=r["key"], receiver=r["receiver"], group_key=r["group_key"],
               content=json.loads(r["content"]), state=r["state"], outcome=r["outcome"], claim_seq=r["claim_seq"],
               origin=r["origin"], targets=json.loads(r["targets"]), attempts=r["attempts"],
               created_at=r["created_at"], updated_at=r["updated_at"], done_at=r["done_at"],
               last_error=r["last_error"])


class Outbox:
    """The SQLite file ``<state_dir>/alerts.sqlite`` (blocking API)."""

    def __init__(self, path: Path):
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        # Keys of unfenced_told, mirrored in memory: the claim loop asks after every read of the
        # notification log, on every daemon, and a worker-thread hop per ask is the cost of an
        # answer that is almost always "none".
        self._unfenced: set[str] = set()

    def open(self) -> None:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # a row is on disk before its delivery starts
        db.executescript(SCHEMA)
        self._unfenced = {r[0] for r in db.execute("SELECT key FROM unfenced_told")}
        self._db = db
        self.path.chmod(0o600)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("outbox is not open")
        return self._db

    # ------------------------------------------------------------ rows

    def add(self, *, key: str, receiver: str, group_key: str, content: dict[str, Any], claim_seq: int | None = None,
            origin: str = "flush", now: float | None = None) -> Row:
        now = time.time() if now is None else now
        with self._lock:
            cur = self._conn().execute(
                "INSERT INTO outbox (key, receiver, group_key, content, claim_seq, origin, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (key, receiver, group_key, json.dumps(content, ensure_ascii=False), claim_seq, origin, now, now),
            )
            rowid = cur.lastrowid
        assert rowid is not None
        return Row(rowid, key, receiver, group_key, content, claim_seq=claim_seq, origin=origin, created_at=now,
                   updated_at=now)

    def pending_keys(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._conn().execute(
                "SELECT DISTINCT key FROM outbox WHERE state = ? ORDER BY key", (PENDING,))]

    def head(self, key: str) -> Row | None:
        """The next row of ``key`` to handle: claimed ones first (by sequence), then candidates by arrival."""
        with self._lock:
            r = self._conn().execute(
                "SELECT * FROM outbox WHERE state = ? AND key = ?"
                " ORDER BY (claim_seq IS NULL), claim_seq, id LIMIT 1", (PENDING, key)).fetchone()
        return _row(r) if r else None

    def newer_candidate(self, key: str, row_id: int) -> bool:
        with self._lock:
            r = self._conn().execute(
                "SELECT 1 FROM outbox WHERE state = ? AND key = ? AND claim_seq IS NULL AND id > ? LIMIT 1",
                (PENDING, key, row_id)).fetchone()
        return r is not None

    def claimed(self, key: str, seq: int) -> Row | None:
        """This daemon's row (pending or done) that claimed sequence ``seq`` of ``key``, if any."""
        with self._lock:
            r = self._conn().execute(
                "SELECT * FROM outbox WHERE key = ? AND claim_seq = ? ORDER BY id DESC LIMIT 1",
                (key, seq)).fetchone()
        return _row(r) if r else None

    def save(self, row: Row, now: float | None = None) -> None:
        """Write back the fields the worker changes."""
        row.updated_at = time.time() if now is None else now
        with self._lock:
            self._conn().execute(
                "UPDATE outbox SET content = ?, state = ?, outcome = ?, claim_seq = ?, targets = ?, attempts = ?,"
                " updated_at = ?, done_at = ?, last_error = ? WHERE id = ?",
                (json.dumps(row.content, ensure_ascii=False), row.state, row.outcome, row.claim_seq,
                 json.dumps(row.targets), row.attempts, row.updated_at, row.done_at, row.last_error, row.id),
            )

    def finish(self, row: Row, outcome: str, error: str | None = None, now: float | None = None) -> None:
        now = time.time() if now is None else now
        row.state, row.outcome, row.done_at = DONE, outcome, now
        if error is not None:
            row.last_error = error
        self.save(row, now)

    # ------------------------------------------------------------ told without the log

    def record_unfenced(self, key: str, firing: list[str], resolved: list[str], at: float) -> None:
        """Remember that ``key``'s receiver was told (firing, resolved) at ``at`` without the log."""
        with self._lock:
            self._conn().execute(
                "INSERT INTO unfenced_told (key, firing, resolved, at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET firing = excluded.firing, resolved = excluded.resolved,"
                " at = excluded.at WHERE excluded.at >= unfenced_told.at",
                (key, json.dumps(firing), json.dumps(resolved), at))
            self._unfenced.add(key)

    def may_have_unfenced(self, key: str) -> bool:
        """Whether :meth:`unfenced_told` can find anything for ``key``; no SQLite, so safe on the event loop."""
        return key in self._unfenced

    def unfenced_told(self, key: str) -> tuple[list[str], list[str], float] | None:
        """(firing, resolved, at) last told to ``key``'s receiver without the log, if not merged yet."""
        with self._lock:
            r = self._conn().execute("SELECT firing, resolved, at FROM unfenced_told WHERE key = ?",
                                     (key,)).fetchone()
        return (json.loads(r[0]), json.loads(r[1]), float(r[2])) if r else None

    def forget_unfenced(self, key: str, at: float) -> None:
        """Drop the record made at ``at`` (not a newer one written since)."""
        with self._lock:
            db = self._conn()
            db.execute("DELETE FROM unfenced_told WHERE key = ? AND at <= ?", (key, at))
            if db.execute("SELECT 1 FROM unfenced_told WHERE key = ?", (key,)).fetchone() is None:
                self._unfenced.discard(key)

    def stats(self) -> tuple[int, float | None]:
        """(pending rows, creation time of the oldest pending row)."""
        with self._lock:
            r = self._conn().execute("SELECT COUNT(*), MIN(created_at) FROM outbox WHERE state = ?",
                                     (PENDING,)).fetchone()
        return int(r[0]), r[1]

    def pending_by_receiver(self) -> dict[str, float]:
        """Oldest pending creation time per receiver."""
        with self._lock:
            return {r[0]: r[1] for r in self._conn().execute(
                "SELECT receiver, MIN(created_at) FROM outbox WHERE state = ? GROUP BY receiver", (PENDING,))}

    def recent(self, limit: int = 50) -> list[Row]:
        with self._lock:
            return [_row(r) for r in self._conn().execute("SELECT * FROM outbox ORDER BY id DESC LIMIT ?", (limit,))]

    def gc(self, before: float) -> int:
        with self._lock:
            cur = self._conn().execute("DELETE FROM outbox WHERE state = ? AND done_at < ?", (DONE, before))
        return cur.rowcount

    # ------------------------------------------------------------ silences (local copy of the KV)

    def save_silence(self, sid: str, doc: dict[str, Any], synced: bool) -> None:
        with self._lock:
            self._conn().execute(
                "INSERT INTO silences (id, doc, updated_at, synced) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at,"
                " synced = excluded.synced",
                (sid, json.dumps(doc, ensure_ascii=False), float(doc.get("updated_at", 0)), int(synced)),
            )

    def load_silences(self) -> list[tuple[dict[str, Any], bool]]:
        with self._lock:
            return [(json.loads(r["doc"]), bool(r["synced"]))
                    for r in self._conn().execute("SELECT doc, synced FROM silences")]

    def delete_silence(self, sid: str) -> None:
        with self._lock:
            self._conn().execute("DELETE FROM silences WHERE id = ?", (sid,))


class AsyncOutbox:
    """:class:`Outbox` for the event loop: each call runs in a worker thread, one at a time."""

    def __init__(self, path: Path):
        self.sync = Outbox(path)
        self._limiter = anyio.CapacityLimiter(1)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs), limiter=self._limiter)

    async def open(self) -> None:
        await self.run(self.sync.open)
