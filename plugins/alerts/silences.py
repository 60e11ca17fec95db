"""Silences: matchers and an expiry; a matching firing alert is not notified while the silence is active.

Silences are federation-wide, since any daemon may be the one that notifies:
each is a JSON document in a JetStream KV bucket (``s.<id>``), announced on
the bus when it changes, and kept in the daemon's SQLite file so that a
daemon starting without the KV still knows them. Two versions of one
silence are merged by ``updated_at`` (the later one wins).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from .matchers import Matcher, MatcherError, matches_all, parse_matchers

MAX_DURATION = 366 * 86400.0
ID = re.compile(r"^[0-9a-f]{16,32}$")


class SilenceError(ValueError):
    """A silence that cannot be created; the message names the field, ``code`` says which rule failed."""

    def __init__(self, message: str, code: str = "invalid"):
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    updated_at: float

    def state(self, now: float) -> str:
        if now >= self.ends_at:
            return "expired"
        return "active" if now >= self.starts_at else "pending"

    def active(self, now: float) -> bool:
        return self.state(now) == "active"

    def matches(self, labels: Mapping[str, str]) -> bool:
        return matches_all(self.matchers, labels)

    def expired(self, now: float) -> Silence:
        return replace(self, ends_at=min(self.ends_at, now), updated_at=max(now, self.updated_at + 1e-6))

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": self.id, "matchers": [str(m) for m in self.matchers],
                               "starts_at": self.starts_at, "ends_at": self.ends_at, "created_by": self.created_by,
                               "comment": self.comment, "updated_at": self.updated_at}
        if now is not None:
            doc["state"] = self.state(now)
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Silence:
        """Rebuild a stored silence; :class:`SilenceError` if the document is malformed."""
        try:
            sid = str(doc["id"])
            if not ID.match(sid):
                raise SilenceError(f"id {sid!r} is not a silence id")
            return cls(sid, parse_matchers(doc["matchers"]), float(doc["starts_at"]), float(doc["ends_at"]),
                       str(doc.get("created_by", "")), str(doc.get("comment", "")), float(doc["updated_at"]))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, SilenceError):
                raise
            raise SilenceError(f"malformed silence document: {exc}") from None

    def description(self) -> str:
        who = f" ({self.created_by})" if self.created_by else ""
        return f"{self.comment}{who}".strip()


def new_silence(matchers: Iterable[str], *, duration: float, comment: str, created_by: str, now: float,
                starts_at: float | None = None) -> Silence:
    """A new silence from user input; :class:`SilenceError` naming the bad field."""
    texts = list(matchers)
    if not texts:
        raise SilenceError("matchers: give at least one, e.g. alertname=\"ProbeFailing\" region=\"eu-west-1\"",
                           "no_matchers")
    try:
        parsed = parse_matchers(texts)
    except MatcherError as exc:
        raise SilenceError(f"matchers: {exc}", "bad_matcher") from None
    if all(m.matches({}) for m in parsed):
        raise SilenceError("matchers: at least one matcher must require a label value "
                           "(these would silence every alert)", "matches_everything")
    if not 0 < duration <= MAX_DURATION:
        raise SilenceError("duration: must be more than 0 and at most 366 days", "bad_duration")
    if not comment.strip():
        raise SilenceError("comment: say why (it is shown in the resolved notification)", "no_comment")
    start = now if starts_at is None else starts_at
    return Silence(secrets.token_hex(8), parsed, start, start + duration, created_by.strip()[:100],
                   comment.strip()[:1000], now)


class SilenceStore:
    """This daemon's copy of the federation's silences."""

    def __init__(self) -> None:
        self.silences: dict[str, Silence] = {}

    def merge(self, silence: Silence) -> bool:
        """Keep ``silence`` if it is new or newer than ours; True if anything changed."""
        mine = self.silences.get(silence.id)
        if mine is not None and mine.updated_at >= silence.updated_at:
            return False
        self.silences[silence.id] = silence
        return True

    def matching(self, labels: Mapping[str, str], now: float) -> Silence | None:
        """The active silence covering ``labels`` (the one ending last), or None."""
        hits = [s for s in self.silences.values() if s.active(now) and s.matches(labels)]
        return max(hits, key=lambda s: s.ends_at) if hits else None

    def listing(self, now: float, include_expired: bool = False) -> list[Silence]:
        out = [s for s in self.silences.values() if include_expired or s.state(now) != "expired"]
        return sorted(out, key=lambda s: (s.starts_at, s.id))

    def forget_expired(self, now: float, keep: float) -> list[str]:
        """Drop silences expired more than ``keep`` seconds ago; their ids."""
        old = [sid for sid, s in self.silences.items() if s.ends_at + keep < now]
        for sid in old:
            del self.silences[sid]
        return old

    def active_count(self, now: float) -> int:
        return sum(1 for s in self.silences.values() if s.active(now))
