"""The SLI history: one SQLite row per region per sample interval, in the daemon's state dir.

A row holds the interval's start and length (ms), its up time (availability
times length, so that rows of any length add up), and its latency
histogram. Rows older than ``full_resolution`` are folded into 5-minute rows
by :meth:`SampleStore.downsample`: sums and histograms merge exactly, so a
window's availability and p95 are the same before and after.

WAL mode with ``synchronous=NORMAL``: a committed row survives the process
being killed (the WAL is in the OS's hands); only a power cut can lose the
last commits. Each sample is committed on its own, so a SIGKILL loses at
most the sample being gathered.
"""

from __future__ import annotations

import base64
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .latency import Histogram

SOURCES = ("probes", "dead", "failover")
"""Where a row comes from: this region's own probes, a peer seen dead, a failed-over peer served here."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    region TEXT NOT NULL,
    source TEXT NOT NULL,
    t_ms INTEGER NOT NULL,
    span_ms INTEGER NOT NULL,
    up_ms REAL NOT NULL,
    checks INTEGER NOT NULL,
    hist BLOB NOT NULL DEFAULT x'',
    folded INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (region, t_ms, source)
) WITHOUT ROWID;
"""

DOWNSAMPLED_SPAN_MS = 300_000


@dataclass(frozen=True)
class Sample:
    """One interval of one region: ``availability`` in [0, 1], the latencies seen."""

    region: str
    t_ms: int
    span_ms: int
    up_ms: float
    checks: int
    hist: bytes = b""
    source: str = "probes"

    @property
    def availability(self) -> float:
        return self.up_ms / self.span_ms if self.span_ms else 1.0

    @property
    def end_ms(self) -> int:
        return self.t_ms + self.span_ms

    def histogram(self) -> Histogram:
        return Histogram.loads(self.hist)

    def to_json(self) -> dict[str, object]:
        return {"region": self.region, "t_ms": self.t_ms, "span_ms": self.span_ms, "up_ms": self.up_ms,
                "checks": self.checks, "hist": base64.b64encode(self.hist).decode(), "source": self.source}

    @classmethod
    def from_json(cls, doc: dict[str, object]) -> Sample:
        return cls(str(doc["region"]), int(doc["t_ms"]), int(doc["span_ms"]),  # type: ignore[call-overload]
                   float(doc["up_ms"]), int(doc["checks"]),  # type: ignore[arg-type]
                   base64.b64decode(str(doc.get("hist") or "")),
                   str(doc.get("source") or "probes"))


class SampleStore:
    """The history file; safe to use from several threads (one connection, one lock)."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, samples: Iterable[Sample]) -> None:
        """Write samples in one transaction; a row already there for (region, t, source) is replaced."""
        rows = [(s.region, s.source, s.t_ms, s.span_ms, s.up_ms, s.checks, s.hist) for s in samples]
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO samples VALUES (?,?,?,?,?,?,?,0)", rows)
            self._db.execute("COMMIT")

    def samples(self, since_ms: int, until_ms: int, region: str | None = None) -> list[Sample]:
        """Rows starting in [since_ms, until_ms), oldest first."""
        query = "SELECT region, t_ms, span_ms, up_ms, checks, hist, source FROM samples WHERE t_ms >= ? AND t_ms < ?"
        args: list[object] = [since_ms, until_ms]
        if region is not None:
            query += " AND region = ?"
            args.append(region)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY t_ms", args).fetchall()
        return [Sample(*row) for row in rows]

    def regions(self) -> list[str]:
        with self._lock:
            return [r for (r,) in self._db.execute("SELECT DISTINCT region FROM samples ORDER BY region")]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM samples").fetchone()[0])

    def downsample(self, before_ms: int, drop_before_ms: int | None = None) -> int:
        """Fold the short rows that start before ``before_ms`` into 5-minute rows; drop rows before ``drop_before_ms``.

        Returns the number of short rows folded. Idempotent: a 5-minute row
        already there absorbs later short rows of its span.
        """
        cutoff = before_ms - before_ms % DOWNSAMPLED_SPAN_MS
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(
                    "SELECT region, source, t_ms, span_ms, up_ms, checks, hist FROM samples "
                    "WHERE t_ms < ? AND folded = 0", (cutoff,)).fetchall()
                folded: dict[tuple[str, str, int], list[tuple[int, float, int, bytes]]] = {}
                for region, source, t_ms, span_ms, up_ms, checks, hist in rows:
                    key = (region, source, t_ms - t_ms % DOWNSAMPLED_SPAN_MS)
                    folded.setdefault(key, []).append((span_ms, up_ms, checks, hist))
                for (region, source, start), parts in folded.items():
                    old = self._db.execute(
                        "SELECT span_ms, up_ms, checks, hist FROM samples WHERE region=? AND source=? AND t_ms=? "
                        "AND folded = 1", (region, source, start)).fetchone()
                    if old is not None:
                        parts.append((int(old[0]), float(old[1]), int(old[2]), bytes(old[3])))
                    span = sum(p[0] for p in parts)
                    up = sum(p[1] for p in parts)
                    checks = sum(p[2] for p in parts)
                    hist = Histogram.merged(p[3] for p in parts).dumps()
                    self._db.execute("DELETE FROM samples WHERE region=? AND source=? AND t_ms>=? AND t_ms<? ",
                                     (region, source, start, start + DOWNSAMPLED_SPAN_MS))
                    # The folded row spans only the time its short rows covered: a gap stays a gap.
                    self._db.execute("INSERT INTO samples VALUES (?,?,?,?,?,?,?,1)",
                                     (region, source, start, span, up, checks, hist))
                if drop_before_ms is not None:
                    self._db.execute("DELETE FROM samples WHERE t_ms < ?", (drop_before_ms,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return len(rows)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples(0, 2**62))
