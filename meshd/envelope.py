"""The signed wire format between daemons.

A message is the JSON object ``{v, federation, sender, incarnation, seq, ts,
type, body}`` as bytes, with the sender region's Ed25519 signature over those
exact bytes and its key id in NATS headers. :class:`Opener` is the only way an
inbound message becomes an :class:`Envelope`: it rejects, with a reason,
anything oversized, undecodable, unsigned, from another federation, forged,
outside the clock-skew window, or replayed.

``incarnation`` is the sender process's boot number (it grows with every
start), ``seq`` counts messages within one incarnation, so a receiver can tell
a replay from a restart.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .identity import Signer, TrustStore

VERSION = 1
HEADER_SIGNATURE = "Meshd-Sig"
HEADER_KEY_ID = "Meshd-Kid"


class Reason(str, Enum):
    """Why an inbound message was dropped; the label of ``meshd_envelopes_rejected_total``."""

    OVERSIZED = "oversized"
    UNDECODABLE = "undecodable"
    UNSIGNED = "unsigned"
    WRONG_FEDERATION = "wrong_federation"
    FORGED = "forged"
    STALE = "stale"
    REPLAYED = "replayed"


class Rejected(Exception):
    def __init__(self, reason: Reason, detail: str):
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason.value}: {detail}")


@dataclass(frozen=True, slots=True)
class Envelope:
    v: int
    federation: str
    sender: str
    incarnation: int
    seq: int
    ts: float
    type: str
    body: dict[str, Any]


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


class Sealer:
    """Builds and signs this region's outbound envelopes."""

    def __init__(self, federation: str, region: str, signer: Signer, incarnation: int,
                 clock: Callable[[], float] = time.time):
        self.federation, self.region, self.incarnation = federation, region, incarnation
        self._signer, self._clock, self._seq = signer, clock, 0

    def seal(self, type: str, body: Mapping[str, Any]) -> tuple[bytes, dict[str, str]]:
        """Payload bytes and the NATS headers that carry the signature."""
        self._seq += 1
        payload = _dumps(
            {
                "v": VERSION,
                "federation": self.federation,
                "sender": self.region,
                "incarnation": self.incarnation,
                "seq": self._seq,
                "ts": round(self._clock(), 6),
                "type": type,
                "body": dict(body),
            }
        )
        sig = base64.b64encode(self._signer.sign(payload)).decode()
        return payload, {HEADER_SIGNATURE: sig, HEADER_KEY_ID: self._signer.key_id}


_FIELDS: dict[str, type | tuple[type, ...]] = {
    "v": int,
    "federation": str,
    "sender": str,
    "incarnation": int,
    "seq": int,
    "ts": (int, float),
    "type": str,
    "body": dict,
}


def decode(payload: bytes) -> Envelope:
    """Parse an envelope's bytes without checking its signature; raise :class:`Rejected`."""
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise Rejected(Reason.UNDECODABLE, "not JSON") from None
    if not isinstance(obj, dict) or set(obj) != set(_FIELDS):
        raise Rejected(Reason.UNDECODABLE, "not an envelope object")
    for name, kind in _FIELDS.items():
        value = obj[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise Rejected(Reason.UNDECODABLE, f"field {name!r} has the wrong type")
    if obj["v"] != VERSION:
        raise Rejected(Reason.UNDECODABLE, f"unsupported version {obj['v']}")
    if obj["seq"] < 1 or obj["incarnation"] < 0:
        raise Rejected(Reason.UNDECODABLE, "negative sequence or incarnation")
    return Envelope(**obj)


class _ReplayWindow:
    """Seen sequence numbers of one sender's current incarnation (RFC 4303-style bitmap)."""

    __slots__ = ("incarnation", "top", "bits")

    def __init__(self, incarnation: int):
        self.incarnation, self.top, self.bits = incarnation, 0, 0

    def accept(self, seq: int, size: int) -> bool:
        if seq > self.top:
            shift = seq - self.top
            self.bits = ((self.bits << shift) | 1) & ((1 << size) - 1) if shift < size else 1
            self.top = seq
            return True
        offset = self.top - seq
        if offset >= size or self.bits >> offset & 1:
            return False
        self.bits |= 1 << offset
        return True


class Opener:
    """Verifies inbound envelopes against the trust bundle and remembers what it has seen."""

    def __init__(self, federation: str, trust: TrustStore, *, clock_skew: float = 30.0,
                 max_payload: int = 256 * 1024, replay_window: int = 4096,
                 clock: Callable[[], float] = time.time):
        self.federation, self.trust = federation, trust
        self.clock_skew, self.max_payload, self.replay_window = clock_skew, max_payload, replay_window
        self._clock = clock
        self._windows: dict[str, _ReplayWindow] = {}

    def open(self, payload: bytes, headers: Mapping[str, str] | None, subject_sender: str | None = None) -> Envelope:
        """Return the verified envelope, or raise :class:`Rejected` saying why not.

        ``subject_sender`` is the sender token of the NATS subject; NATS
        permissions tie it to the connection's user, so it must match the
        signed sender.
        """
        if len(payload) > self.max_payload:
            raise Rejected(Reason.OVERSIZED, f"{len(payload)} bytes > {self.max_payload}")
        env = decode(payload)
        sig_b64 = (headers or {}).get(HEADER_SIGNATURE)
        kid = (headers or {}).get(HEADER_KEY_ID)
        if not sig_b64 or not kid:
            raise Rejected(Reason.UNSIGNED, f"no signature from {env.sender!r}")
        if env.federation != self.federation:
            raise Rejected(Reason.WRONG_FEDERATION, f"federation {env.federation!r}")
        if subject_sender is not None and subject_sender != env.sender:
            raise Rejected(Reason.FORGED, f"subject names {subject_sender!r}, envelope says {env.sender!r}")
        if env.sender not in self.trust:
            raise Rejected(Reason.FORGED, f"unknown sender {env.sender!r}")
        try:
            signature = base64.b64decode(sig_b64, validate=True)
        except (binascii.Error, ValueError):
            raise Rejected(Reason.FORGED, f"malformed signature from {env.sender!r}") from None
        if not self.trust.verify(env.sender, kid, payload, signature):
            raise Rejected(Reason.FORGED, f"bad signature for {env.sender!r}")
        if abs(self._clock() - env.ts) > self.clock_skew:
            raise Rejected(Reason.STALE, f"timestamp {env.ts:.3f} outside ±{self.clock_skew:g}s")
        window = self._windows.get(env.sender)
        if window is None or env.incarnation > window.incarnation:
            window = self._windows[env.sender] = _ReplayWindow(env.incarnation)
        elif env.incarnation < window.incarnation:
            raise Rejected(Reason.REPLAYED, f"old incarnation {env.incarnation} of {env.sender!r}")
        if not window.accept(env.seq, self.replay_window):
            raise Rejected(Reason.REPLAYED, f"seq {env.seq} of {env.sender!r} already seen")
        return env
