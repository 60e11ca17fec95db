"""The failover audit log: every vote and decision, hash-chained, in the state directory.

One JSON object per line::

    {"seq": 7, "ts": 1764147600.25, "kind": "vote", "data": {...}, "prev": "<hash of 6>", "hash": "<sha256>"}

``hash`` is the SHA-256 of the canonical JSON of the other fields, so an
edited entry no longer matches its hash; ``prev`` and ``seq`` link each entry
to the one before, so a dropped or reordered entry breaks the chain. A
chain alone cannot show that its last entries were cut off, so a head file
beside the log (``audit.log.head``) holds the last ``seq`` and ``hash``
signed with the region's Ed25519 key: truncation, or a rewritten chain, no
longer matches a signature only the region's key can make.

Every append is fsynced before the caller goes on: a vote is on disk before
it is sent.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshd.identity import Signer, TrustStore

GENESIS = "0" * 64
FIELDS = ("seq", "ts", "kind", "data", "prev", "hash")
HEAD_SUFFIX = ".head"
PROBLEM_CODES = ("unreadable", "malformed", "edited", "dropped", "reordered", "duplicated", "broken_link",
                 "truncated", "unsigned_tail", "head_mismatch", "head_signature", "head_missing", "head_malformed")


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def entry_hash(seq: int, ts: float, kind: str, data: Any, prev: str) -> str:
    return hashlib.sha256(canonical({"seq": seq, "ts": ts, "kind": kind, "data": data, "prev": prev})).hexdigest()


def head_message(region: str, seq: int, digest: str) -> bytes:
    """The bytes the head signature covers."""
    return f"meshd-failover-audit-head\n{region}\n{seq}\n{digest}".encode()


@dataclass(frozen=True)
class Entry:
    seq: int
    ts: float
    kind: str
    data: dict[str, Any]
    prev: str
    hash: str
    line: int = 0


@dataclass(frozen=True)
class Problem:
    """Why a log does not verify: a code (for translated messages) and the entry it concerns."""

    code: str
    """``unreadable``, ``malformed``, ``edited``, ``dropped``, ``reordered``, ``duplicated``,
    ``broken_link``, ``truncated``, ``unsigned_tail``, ``head_mismatch``, ``head_signature``,
    ``head_missing``, ``head_malformed``."""
    seq: int | None
    line: int | None
    detail: str
    params: dict[str, Any] = field(default_factory=dict)
    """Values for the translated message of ``code`` (``failover.audit.problem.<code>``)."""

    def __str__(self) -> str:
        where = f"entry {self.seq}" if self.seq is not None else "log"
        at = f" (line {self.line})" if self.line else ""
        return f"{where}{at}: {self.detail}"


@dataclass
class Verification:
    path: Path
    entries: list[Entry] = field(default_factory=list)
    problem: Problem | None = None
    torn_tail: bool = False
    """The last line was cut off mid-write (a crash before its fsync finished; it was never acted on)."""
    head_seq: int | None = None
    head_signed_by: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def _parse(line: str, number: int) -> Entry | Problem:
    try:
        obj = json.loads(line)
    except ValueError:
        return Problem("malformed", None, number, "not a JSON object", {"line": number})
    if not isinstance(obj, dict) or set(obj) != set(FIELDS):
        return Problem("malformed", obj.get("seq") if isinstance(obj, dict) else None, number,
                       "not an audit entry (fields differ)", {"line": number})
    if not (isinstance(obj["seq"], int) and isinstance(obj["ts"], (int, float)) and isinstance(obj["kind"], str)
            and isinstance(obj["data"], dict) and isinstance(obj["prev"], str) and isinstance(obj["hash"], str)):
        return Problem("malformed", obj.get("seq"), number, "a field has the wrong type", {"line": number})
    return Entry(obj["seq"], obj["ts"], obj["kind"], obj["data"], obj["prev"], obj["hash"], number)


def verify(path: Path, *, trust: TrustStore | None = None, region: str | None = None) -> Verification:
    """Check the chain of ``path`` and its signed head; never raises for a bad log.

    With ``trust`` and ``region``, the head's signature must be ``region``'s.
    """
    result = Verification(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raw = b""
    except OSError as exc:
        result.problem = Problem("unreadable", None, None, f"cannot read: {exc.strerror}",
                                 {"reason": exc.strerror or ""})
        return result
    text = raw.decode("utf-8", errors="replace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    elif lines:
        # The last write did not finish (no newline): a torn append, never acted on.
        lines.pop()
        result.torn_tail = True
    parsed: list[Entry] = []
    for number, line in enumerate(lines, start=1):
        item = _parse(line, number)
        if isinstance(item, Problem):
            result.problem = item
            return result
        parsed.append(item)
    by_seq = {e.seq: e for e in parsed}
    prev_hash, expected = GENESIS, 1
    for entry in parsed:
        if entry_hash(entry.seq, entry.ts, entry.kind, entry.data, entry.prev) != entry.hash:
            result.problem = Problem("edited", entry.seq, entry.line,
                                     "its content does not match its hash: the entry was edited",
                                     {"seq": entry.seq, "line": entry.line})
            return result
        if entry.seq != expected:
            params = {"seq": entry.seq, "line": entry.line, "expected": expected, "previous": expected - 1}
            if expected in by_seq and by_seq[expected].line > entry.line:
                code, detail = "reordered", f"entry {expected} should come here but is at line {by_seq[expected].line}"
            elif entry.seq > expected:
                code, detail = "dropped", f"entry {expected} is missing before it: dropped"
            else:
                code, detail = "duplicated", f"found after entry {expected - 1}: out of order or duplicated"
            result.problem = Problem(code, entry.seq, entry.line, detail, params)
            return result
        if entry.prev != prev_hash:
            result.problem = Problem("broken_link", entry.seq, entry.line,
                                     f"it does not chain to entry {entry.seq - 1}: an entry before it was replaced",
                                     {"seq": entry.seq, "line": entry.line, "previous": entry.seq - 1})
            return result
        prev_hash, expected = entry.hash, expected + 1
        result.entries.append(entry)
    result.problem = _check_head(path, result, trust, region)
    return result


def _check_head(path: Path, result: Verification, trust: TrustStore | None, region: str | None) -> Problem | None:
    head_path = Path(str(path) + HEAD_SUFFIX)
    last = result.entries[-1] if result.entries else None
    try:
        head = json.loads(head_path.read_text())
    except FileNotFoundError:
        if last is None:
            return None
        return Problem("head_missing", None, None, f"{head_path.name} is missing: the log cannot be checked for "
                                                    "removed entries", {"head": head_path.name})
    except (OSError, ValueError):
        return Problem("head_malformed", None, None, f"{head_path.name} is not readable JSON",
                       {"head": head_path.name})
    if not (isinstance(head, dict) and isinstance(head.get("seq"), int) and isinstance(head.get("hash"), str)
            and isinstance(head.get("sig"), str) and isinstance(head.get("kid"), str)
            and isinstance(head.get("region"), str)):
        return Problem("head_malformed", None, None, f"{head_path.name} lacks seq, hash, region, kid or sig",
                       {"head": head_path.name})
    result.head_seq = head["seq"]
    if trust is not None:
        import base64
        import binascii

        try:
            sig = base64.b64decode(head["sig"], validate=True)
        except (binascii.Error, ValueError):
            sig = b""
        signer = head["region"]
        if (region is not None and signer != region) or not trust.verify(
                signer, head["kid"], head_message(signer, head["seq"], head["hash"]), sig):
            return Problem("head_signature", head["seq"], None,
                           f"the head's signature is not {region or signer}'s: the head file was forged or replaced",
                           {"head": head_path.name, "region": region or signer})
        result.head_signed_by = signer
    if head["seq"] == 0 and head["hash"] != GENESIS:
        return Problem("head_malformed", None, None, f"{head_path.name} names no entry but holds a hash",
                       {"head": head_path.name})
    if last is not None and last.seq > head["seq"] + 1:
        # The daemon signs the head right after each append, so a crash leaves at most one entry
        # beyond it; more were written by something else.
        return Problem("unsigned_tail", head["seq"] + 2, result.entries[head["seq"] + 1].line,
                       f"entries {head['seq'] + 1} to {last.seq} are not covered by the signed head",
                       {"seq": head["seq"] + 1, "last": last.seq})
    if head["seq"] == 0:
        return None
    if last is None or head["seq"] > last.seq:
        have = last.seq if last else 0
        return Problem("truncated", have + 1, None,
                       f"the signed head records entry {head['seq']} but the log ends at entry {have}: "
                       "entries were removed from its end", {"seq": head["seq"], "have": have})
    at = result.entries[head["seq"] - 1]
    if at.hash != head["hash"]:
        return Problem("head_mismatch", at.seq, at.line,
                       "it does not match the signed head: the chain was rewritten from here or before",
                       {"seq": at.seq, "line": at.line})
    return None


class AuditLog:
    """Appends to one region's audit log; thread-safe, every append fsynced."""

    def __init__(self, path: Path, region: str, signer: Signer):
        self.path = path
        self.head_path = Path(str(path) + HEAD_SUFFIX)
        self.region = region
        self._signer = signer
        self._lock = threading.Lock()
        self.seq = 0
        self.last_hash = GENESIS

    def open(self, trust: TrustStore | None = None) -> Verification:
        """Load and verify the existing log, repairing what a crash can leave.

        A torn last line (a crash before its fsync finished) is cut off; a
        head behind an intact chain (a crash between the two writes) is
        brought forward. A log that does not verify is moved aside as
        ``audit.log.broken-<time>`` and a new chain starts, whose first
        entry names it; the caller decides what that means for voting.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        check = verify(self.path, trust=trust, region=self.region)
        if check.problem is not None:
            stamp = time.strftime("%Y%m%dT%H%M%S")
            broken = self.path.with_name(f"{self.path.name}.broken-{stamp}")
            for src, dst in ((self.path, broken), (self.head_path, Path(str(broken) + HEAD_SUFFIX))):
                if src.exists():
                    os.replace(src, dst)
            self.seq, self.last_hash = 0, GENESIS
            self.append("reset", {"moved_to": broken.name, "problem": str(check.problem)})
            return check
        if check.torn_tail:
            good = b"".join(line + b"\n" for line in self.path.read_bytes().split(b"\n")[: len(check.entries)])
            self._rewrite(good)
        if check.entries:
            self.seq, self.last_hash = check.entries[-1].seq, check.entries[-1].hash
        if check.head_seq is None or check.head_seq != self.seq:
            self._write_head()
        return check

    def _rewrite(self, content: bytes) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)

    def append(self, kind: str, data: dict[str, Any]) -> Entry:
        """Write one entry and its signed head, both fsynced; return the entry."""
        with self._lock:
            seq, ts, prev = self.seq + 1, round(time.time(), 6), self.last_hash
            digest = entry_hash(seq, ts, kind, data, prev)
            line = canonical({"seq": seq, "ts": ts, "kind": kind, "data": data, "prev": prev, "hash": digest})
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            self.seq, self.last_hash = seq, digest
            self._write_head()
            return Entry(seq, ts, kind, data, prev, digest)

    def _write_head(self) -> None:
        import base64

        sig = base64.b64encode(self._signer.sign(head_message(self.region, self.seq, self.last_hash))).decode()
        body = canonical({"region": self.region, "seq": self.seq, "hash": self.last_hash,
                          "kid": self._signer.key_id, "sig": sig})
        tmp = Path(str(self.head_path) + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, body + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.head_path)
        _fsync_dir(self.head_path.parent)

    def entries(self) -> Iterator[Entry]:
        """Every entry currently in the log (unverified read, for rebuilding state)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        for number, line in enumerate(text.splitlines(), start=1):
            item = _parse(line, number)
            if isinstance(item, Entry):
                yield item


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
