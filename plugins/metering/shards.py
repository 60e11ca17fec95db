"""The ledger shards of a region: their files, the lock that keeps a repartition apart, merged totals.

With ``metering.partitions: 1`` the region has one ledger, the file it always
had (``<state_dir>/metering/ledger.sqlite3``). With N > 1, partition k has
``ledger.p<k>of<N>.sqlite3`` beside it: the layout is in the file names, so a
daemon started with another partition count than its files were written
with finds out and refuses to count, instead of starting empty shards and
counting old events again (:func:`check_layout`).

Every process that opens the shards (the daemon, ``meshd ingest`` workers)
holds a shared ``flock`` on ``ingest.lock`` in the same directory;
``meshd metering repartition`` takes it exclusively, so it runs only while
nothing ingests or reads.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .aggregate import Aggregate, Partial
from .atrest import AtRest
from .events import encode
from .ledger import Ledger, LedgerError
from .subjects import partition_of

LOCK_NAME = "ingest.lock"


class LayoutMismatch(LedgerError):
    """The shards on disk were written for another partition count."""


class Busy(LedgerError):
    """Another process holds the shards (ingestion is running)."""


def shard_path(base: Path, partition: int, partitions: int) -> Path:
    if partitions == 1:
        return base
    return base.with_name(f"{base.stem}.p{partition}of{partitions}{base.suffix}")


def shard_paths(base: Path, partitions: int) -> list[Path]:
    return [shard_path(base, k, partitions) for k in range(partitions)]


def layouts_on_disk(base: Path) -> dict[int, list[Path]]:
    """Partition count -> the shard files of that layout found beside ``base``."""
    found: dict[int, list[Path]] = {}
    if base.exists():
        found[1] = [base]
    pattern = re.compile(rf"^{re.escape(base.stem)}\.p(\d+)of(\d+){re.escape(base.suffix)}$")
    if base.parent.is_dir():
        for path in sorted(base.parent.iterdir()):
            match = pattern.match(path.name)
            if match:
                found.setdefault(int(match.group(2)), []).append(path)
    return found


def check_layout(base: Path, partitions: int, config: str = "") -> None:
    """Raise :class:`LayoutMismatch` when the files on disk belong to another partition count."""
    others = sorted(n for n in layouts_on_disk(base) if n != partitions)
    if others:
        where = f" --config {config}" if config else ""
        raise LayoutMismatch(
            f"{base.parent} holds ledger shards for metering.partitions: {others[0]}, the config says "
            f"{partitions}: stop ingestion and run `meshd metering repartition{where} --to {partitions}` "
            "(docs/metering.md, Changing the partition count)")


class ShardLock:
    """A process's hold on the shard directory: shared to ingest or read, exclusive to repartition."""

    def __init__(self, directory: Path):
        self.path = Path(directory) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, exclusive: bool = False) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            what = "a daemon or `meshd ingest` worker has the shards open" if exclusive else \
                "a repartition is rewriting the shards"
            raise Busy(f"{self.path.parent}: {what}") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def merge_partials(shares: Iterable[dict[str, Partial]]) -> dict[str, Partial]:
    """One tenant's partials from every shard, as if they came from one ledger."""
    merged: dict[str, Partial] = {}
    for share in shares:
        for meter, part in share.items():
            into = merged.get(meter)
            if into is None:
                merged[meter] = part
                continue
            into.aggregate.merge(part.aggregate)
            if into.members is not None and part.members is not None:
                into.members |= part.members
            else:
                into.members = None
    for part in merged.values():
        part.distinct = len(part.members or ())
    return merged


# ---------------------------------------------------------------- repartition


def repartition(base: Path, at_rest: AtRest, *, region: str, retention: float, to: int,
                backup_dir: Path | None = None) -> dict[str, Any]:
    """Rewrite the shards of ``base``'s directory for ``to`` partitions; a report of what moved.

    Every aggregate row goes to the shard of its tenant under the new hash
    (copied as stored: its encryption context names the region and the row,
    not the shard); UNIQUE_COUNT members follow their row; every dedup record
    goes to every new shard, since a digest of (source, id) does not say
    which tenant's event it was. The old files are moved into ``backup_dir``,
    never deleted. The caller holds the exclusive :class:`ShardLock`.
    """
    layouts = layouts_on_disk(base)
    if len(layouts) > 1:
        raise LayoutMismatch(f"{base.parent} holds shards of several partition counts "
                             f"({', '.join(map(str, sorted(layouts)))}): an interrupted repartition? "
                             "Move the files of the one not wanted aside and run it again")
    if not layouts:
        return {"from": None, "to": to, "rows": 0, "dedup_records": 0, "events": 0}
    (old_count, old_files), = layouts.items()
    if old_count == to:
        return {"from": old_count, "to": to, "rows": 0, "dedup_records": 0, "events": 0, "unchanged": True}
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    work = base.parent / f"repartition-{old_count}to{to}.tmp"
    work.mkdir(mode=0o700, exist_ok=True)
    for leftover in work.iterdir():
        leftover.unlink()  # an earlier attempt that did not finish: its originals were never touched
    targets = [Ledger(shard_path(work / base.name, k, to), at_rest, region=region, retention=retention)
               for k in range(to)]
    sources = [Ledger(path, at_rest, region=region, retention=retention) for path in old_files]
    moved = {"rows": 0, "events": [0] * to}
    duplicates, watermark, pruned = 0, 0.0, 0.0
    try:
        for ledger in (*targets, *sources):
            ledger.open()
        for source in sources:
            _move_rows(source, targets, to, moved)
            duplicates += source.counters["duplicates"]
            watermark = max(watermark, source.watermark)
            pruned = max(pruned, source.pruned_at)
        dedup = 0
        for k, target in enumerate(targets):
            rows = _copy_dedup(target, [s.path for s in sources])
            dedup = max(dedup, rows)
            _set_counters(target, accepted=moved["events"][k], duplicates=duplicates if k == 0 else 0,
                          dedup_rows=rows, watermark=watermark, pruned_at=pruned)
    finally:
        for ledger in (*targets, *sources):
            ledger.close()
    backup = backup_dir or base.parent / f"before-repartition-{old_count}to{to}-{stamp}"
    backup.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in old_files:
        for suffix in ("", "-wal", "-shm"):
            old = Path(f"{path}{suffix}")
            if old.exists():
                old.rename(backup / old.name)
    for target in targets:
        for suffix in ("-wal", "-shm"):
            Path(f"{target.path}{suffix}").unlink(missing_ok=True)
        target.path.rename(base.parent / target.path.name)
    work.rmdir()
    return {"from": old_count, "to": to, "rows": moved["rows"], "dedup_records": dedup,
            "events": sum(moved["events"]), "events_per_partition": moved["events"], "backup": str(backup)}


def _move_rows(source: Ledger, targets: list[Ledger], to: int, moved: dict[str, Any]) -> None:
    db = source._db()
    owner: dict[str, int] = {}
    for tenant_key, meter, hour, data in db.execute("SELECT tenant_key, meter, hour, data FROM aggregates"):
        row = source._read_row(tenant_key, meter, hour, data)
        k = owner[tenant_key] = partition_of(str(row["tenant"]), to)
        aggregate = Aggregate.from_json(row)
        _add_row(targets[k], tenant_key, meter, hour, data, row["tenant"], aggregate)
        moved["rows"] += 1
        moved["events"][k] += aggregate.events
    by_target: dict[int, list[tuple[str, str, int, bytes]]] = {}
    for tenant_key, meter, hour, member in db.execute("SELECT tenant_key, meter, hour, member FROM uniques"):
        if tenant_key not in owner:
            raise LedgerError(f"{source.path}: a UNIQUE_COUNT member without its aggregate row ({meter}, "
                              f"hour {hour}): the shard is damaged, nothing was moved")
        by_target.setdefault(owner[tenant_key], []).append((tenant_key, meter, hour, member))
    for k, members in by_target.items():
        tdb = targets[k]._db()
        tdb.execute("BEGIN IMMEDIATE")
        tdb.executemany("INSERT OR IGNORE INTO uniques(tenant_key, meter, hour, member) VALUES (?, ?, ?, ?)",
                        members)
        tdb.execute("COMMIT")


def _add_row(target: Ledger, tenant_key: str, meter: str, hour: int, data: str, tenant: str,
             aggregate: Aggregate) -> None:
    db = target._db()
    existing = db.execute("SELECT data FROM aggregates WHERE tenant_key = ? AND meter = ? AND hour = ?",
                          (tenant_key, meter, hour)).fetchone()
    if existing is not None:  # only if a tenant's rows were ever split across shards: add them up
        current = Aggregate.from_json(target._read_row(tenant_key, meter, hour, existing[0]))
        current.merge(aggregate)
        data = target.at_rest.seal(encode({"tenant": tenant, **current.to_json()}),
                                   target._context(tenant_key, meter, hour))
    db.execute("INSERT INTO aggregates(tenant_key, meter, hour, data) VALUES (?, ?, ?, ?) "
               "ON CONFLICT(tenant_key, meter, hour) DO UPDATE SET data = excluded.data",
               (tenant_key, meter, hour, data))


def _copy_dedup(target: Ledger, sources: list[Path]) -> int:
    db = target._db()
    for i, path in enumerate(sources):
        db.execute(f"ATTACH DATABASE ? AS src{i}", (str(path),))
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute(f"INSERT OR IGNORE INTO dedup(digest, day) SELECT digest, day FROM src{i}.dedup")
            db.execute("COMMIT")
        finally:
            db.execute(f"DETACH DATABASE src{i}")
    return int(db.execute("SELECT COUNT(*) FROM dedup").fetchone()[0])


def _set_counters(target: Ledger, **values: Any) -> None:
    db = target._db()
    db.execute("BEGIN IMMEDIATE")
    target._set_meta(values)
    db.execute("COMMIT")
