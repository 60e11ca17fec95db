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
from typing import Any

from .burn import Incident
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
CREATE TABLE IF NOT EXISTS hourly (
    region TEXT NOT NULL,
    source TEXT NOT NULL,
    hour_ms INTEGER NOT NULL,
    span_ms INTEGER NOT NULL,
    up_ms REAL NOT NULL,
    checks INTEGER NOT NULL,
    hist BLOB NOT NULL,
    PRIMARY KEY (region, source, hour_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS incidents (
    region TEXT NOT NULL,
    opened_ms INTEGER NOT NULL,
    detected_ms INTEGER,
    resolved_ms INTEGER,
    rules TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (region, opened_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS coverage (
    region TEXT NOT NULL,
    source TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    PRIMARY KEY (region, source, start_ms)
) WITHOUT ROWID;
"""

HOUR_MS = 3_600_000



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
        # Each hour's sums and latencies are kept merged as well, and the covered time as ranges, so that a
        # month's answer reads 720 hourly rows and a few ranges, not 259,200 rows.
        hours: dict[tuple[str, str, int], list[Any]] = {}
        for s in samples:
            key = (s.region, s.source, s.t_ms - s.t_ms % HOUR_MS)
            acc = hours.setdefault(key, [0, 0.0, 0, Histogram()])
            acc[0] += s.span_ms
            acc[1] += s.up_ms
            acc[2] += s.checks
            if s.hist:
                acc[3].add_encoded(s.hist)
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for s in samples:
                    # A row written again (a restart within the same interval) replaces the old one in the hour too.
                    old = self._db.execute("SELECT span_ms, up_ms, checks, hist FROM samples WHERE region=? AND "
                                           "t_ms=? AND source=? AND folded=0", (s.region, s.t_ms, s.source)).fetchone()
                    if old is not None:
                        acc = hours[(s.region, s.source, s.t_ms - s.t_ms % HOUR_MS)]
                        acc[0] -= old[0]
                        acc[1] -= old[1]
                        acc[2] -= old[2]
                        if old[3]:
                            acc[3].add_encoded(bytes(old[3]), -1)
                self._db.executemany("INSERT OR REPLACE INTO samples VALUES (?,?,?,?,?,?,?,0)", rows)
                for (region, source, hour), (span, up, checks, hist) in hours.items():
                    old = self._db.execute("SELECT span_ms, up_ms, checks, hist FROM hourly "
                                           "WHERE region=? AND source=? AND hour_ms=?", (region, source, hour)).fetchone()
                    if old is not None:
                        span, up, checks = span + old[0], up + old[1], checks + old[2]
                        if old[3]:
                            hist.add_encoded(bytes(old[3]))
                    self._db.execute("INSERT OR REPLACE INTO hourly VALUES (?,?,?,?,?,?,?)",
                                     (region, source, hour, span, up, checks, hist.dumps()))
                for s in samples:
                    self._cover(s.region, s.source, s.t_ms, s.end_ms)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _cover(self, region: str, source: str, start: int, end: int) -> None:
        """Add [start, end) to the covered ranges, joining the range it touches (the usual case: the last one)."""
        touching = self._db.execute(
            "SELECT start_ms, end_ms FROM coverage WHERE region=? AND source=? AND start_ms <= ? AND end_ms >= ? "
            "ORDER BY start_ms", (region, source, end, start)).fetchall()
        for a, b in touching:
            start, end = min(start, a), max(end, b)
            self._db.execute("DELETE FROM coverage WHERE region=? AND source=? AND start_ms=?", (region, source, a))
        self._db.execute("INSERT INTO coverage VALUES (?,?,?,?)", (region, source, start, end))

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

    def _hours(self, since_ms: int, until_ms: int) -> tuple[int, int, list[tuple[int, int]]]:
        """The whole hours inside [since_ms, until_ms) and the edges left around them."""
        first = since_ms + (-since_ms % HOUR_MS)
        last = until_ms - until_ms % HOUR_MS
        if first >= last:
            return 0, 0, [(since_ms, until_ms)]
        return first, last, [(since_ms, first), (last, until_ms)]

    def totals(self, since_ms: int, until_ms: int) -> list[tuple[str, str, int, float, int]]:
        """(region, source, covered ms, up ms, checks) of the rows starting in [since_ms, until_ms)."""
        first, last, edges = self._hours(since_ms, until_ms)
        sums: dict[tuple[str, str], list[Any]] = {}
        with self._lock:
            parts = [self._db.execute("SELECT region, source, SUM(span_ms), SUM(up_ms), SUM(checks) FROM hourly "
                                      "WHERE hour_ms >= ? AND hour_ms < ? GROUP BY region, source", (first, last))]
            for a, b in edges:
                parts.append(self._db.execute("SELECT region, source, SUM(span_ms), SUM(up_ms), SUM(checks) FROM samples "
                                              "WHERE t_ms >= ? AND t_ms < ? GROUP BY region, source", (a, b)))
            for cursor in parts:
                for region, source, span, up, checks in cursor:
                    acc = sums.setdefault((region, source), [0, 0.0, 0])
                    acc[0] += span
                    acc[1] += up
                    acc[2] += checks
        return [(r, src, int(a[0]), float(a[1]), int(a[2])) for (r, src), a in sorted(sums.items())]

    def ranges(self, region: str, source: str, since_ms: int, until_ms: int) -> list[tuple[int, int]]:
        """The covered time in [since_ms, until_ms), as sorted ranges."""
        with self._lock:
            rows = self._db.execute("SELECT start_ms, end_ms FROM coverage WHERE region=? AND source=? AND end_ms > ? "
                                    "AND start_ms < ? ORDER BY start_ms", (region, source, since_ms, until_ms)).fetchall()
        return [(max(int(a), since_ms), min(int(b), until_ms)) for a, b in rows]

    def histogram(self, region: str, source: str, since_ms: int, until_ms: int) -> Histogram:
        """The latencies of the rows in [since_ms, until_ms): whole hours from the hourly table, the edges from rows."""
        first, last, edges = self._hours(since_ms, until_ms)
        out = Histogram()
        with self._lock:
            for (blob,) in self._db.execute(
                    "SELECT hist FROM hourly WHERE region=? AND source=? AND hour_ms>=? AND hour_ms<?",
                    (region, source, first, last)):
                out.add_encoded(bytes(blob))
            for a, b in edges:
                for (blob,) in self._db.execute(
                        "SELECT hist FROM samples WHERE region=? AND source=? AND t_ms>=? AND t_ms<? AND hist != x''",
                        (region, source, a, b)):
                    out.add_encoded(bytes(blob))
        return out

    def daily(self, region: str, since_ms: int, until_ms: int) -> list[tuple[int, int, float]]:
        """(day start ms, covered ms, up ms) of the region's own rows per UTC day, from the hourly rollup."""
        with self._lock:
            return [(int(d) * 86_400_000, int(span), float(up)) for d, span, up in self._db.execute(
                "SELECT hour_ms / 86400000, SUM(span_ms), SUM(up_ms) FROM hourly WHERE region=? AND source='probes' "
                "AND hour_ms >= ? AND hour_ms < ? GROUP BY 1 ORDER BY 1", (region, since_ms, until_ms))]

    def save_incidents(self, incidents: Iterable[Incident]) -> None:
        """Write (or update: an incident is keyed by region and opening) incidents."""
        rows = [(i.region, i.opened_ms, i.detected_ms, i.resolved_ms, ",".join(i.rules)) for i in incidents]
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO incidents VALUES (?,?,?,?,?)", rows)

    def incidents(self, region: str, since_ms: int, until_ms: int) -> list[Incident]:
        """The region's incidents open at some time in [since_ms, until_ms), oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT region, opened_ms, detected_ms, resolved_ms, rules FROM incidents WHERE region=? AND opened_ms < ? "
                "AND (resolved_ms IS NULL OR resolved_ms >= ?) ORDER BY opened_ms", (region, until_ms, since_ms)).fetchall()
        return [Incident(r, o, d, res, [x for x in rules.split(",") if x]) for r, o, d, res, rules in rows]

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
                    self._db.execute("DELETE FROM hourly WHERE hour_ms < ?", (drop_before_ms - drop_before_ms % HOUR_MS,))
                    self._db.execute("DELETE FROM coverage WHERE end_ms <= ?", (drop_before_ms,))
                    self._db.execute("UPDATE coverage SET start_ms = ? WHERE start_ms < ?", (drop_before_ms, drop_before_ms))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return len(rows)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples(0, 2**62))
