"""Votes and decision records as signed, self-proving bytes.

A vote is the signed envelope a daemon published, kept as it was sent
(payload, signature, key id), so any region can check it later against the
trust bundle. A decision record in the KV bucket is itself a signed
envelope from the committer and carries the votes that made its quorum: a
reader verifies every signature and counts distinct voters before it
applies anything, so a forged or short record is rejected, not followed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from meshd.envelope import HEADER_KEY_ID, HEADER_SIGNATURE, Envelope, Rejected, decode
from meshd.identity import TrustStore

from .config import strict_majority

ACTIONS = ("failover", "failback")
MAX_REASON = 500
"""Characters of an operator's reason: a sentence for the audit log, not a document."""


class InvalidRecord(Exception):
    """A vote or decision record that does not verify; the message says why."""


@dataclass(frozen=True)
class Proof:
    """A signed envelope as it travelled: payload bytes, signature, key id."""

    payload: bytes
    sig: str
    kid: str

    @classmethod
    def from_message(cls, data: bytes, headers: dict[str, str] | None) -> Proof:
        headers = headers or {}
        return cls(bytes(data), headers.get(HEADER_SIGNATURE, ""), headers.get(HEADER_KEY_ID, ""))

    def to_json(self) -> dict[str, str]:
        return {"p": base64.b64encode(self.payload).decode(), "s": self.sig, "k": self.kid}

    @classmethod
    def from_json(cls, obj: Any) -> Proof:
        if not isinstance(obj, dict) or not all(isinstance(obj.get(k), str) for k in ("p", "s", "k")):
            raise InvalidRecord("a proof needs string fields p, s and k")
        try:
            payload = base64.b64decode(obj["p"], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRecord("a proof's payload is not base64") from None
        return cls(payload, obj["s"], obj["k"])

    def open(self, trust: TrustStore, federation: str) -> Envelope:
        """The envelope once its signature checks out; else :class:`InvalidRecord`."""
        try:
            env = decode(self.payload)
        except Rejected as exc:
            raise InvalidRecord(f"not an envelope: {exc.detail}") from None
        if env.federation != federation:
            raise InvalidRecord(f"envelope of federation {env.federation!r}")
        try:
            signature = base64.b64decode(self.sig, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRecord(f"malformed signature from {env.sender!r}") from None
        if not trust.verify(env.sender, self.kid, self.payload, signature):
            raise InvalidRecord(f"bad signature for {env.sender!r}")
        return env


@dataclass(frozen=True)
class Vote:
    """One daemon's vote on (region, term), with the proof it was signed by that daemon."""

    voter: str
    region: str
    term: int
    action: str
    yes: bool
    reason: str
    manual: bool
    cast_at: float
    proof: Proof | None = None
    signed_at: float = 0.0
    """When the voter sent this copy (its envelope's timestamp): the last time it renewed the vote."""
    requests: tuple[tuple[str, str], ...] = ()
    """For a vote on operators' requests: (requesting region, its reason) pairs the voter had heard."""

    def body(self) -> dict[str, Any]:
        body = {"region": self.region, "term": self.term, "action": self.action,
                "vote": "yes" if self.yes else "no", "reason": self.reason, "manual": self.manual,
                "cast_at": self.cast_at}
        if self.requests:
            body["requests"] = dict(self.requests)
        return body


def valid_reason(reason: Any) -> bool:
    """An operator's reason: text, not blank, at most :data:`MAX_REASON` characters, one line."""
    return (isinstance(reason, str) and bool(reason.strip()) and len(reason) <= MAX_REASON
            and reason.isprintable())


def parse_vote_body(voter: str, body: dict[str, Any], proof: Proof | None = None) -> Vote:
    """A :class:`Vote` from an envelope body; :class:`InvalidRecord` if a field is wrong."""
    try:
        region, term, action = body["region"], body["term"], body["action"]
        vote, reason, manual, cast_at = body["vote"], body.get("reason", ""), body.get("manual", False), body["cast_at"]
    except (KeyError, TypeError):
        raise InvalidRecord("a vote needs region, term, action, vote and cast_at") from None
    if not (isinstance(region, str) and isinstance(term, int) and not isinstance(term, bool) and term >= 1
            and action in ACTIONS and vote in ("yes", "no") and isinstance(reason, str)
            and isinstance(manual, bool) and isinstance(cast_at, (int, float))):
        raise InvalidRecord("a vote field has the wrong type or value")
    requests = body.get("requests", {})
    if not (isinstance(requests, dict) and all(isinstance(k, str) and valid_reason(v) for k, v in requests.items())):
        raise InvalidRecord("a vote's requests must map requesting regions to their reasons")
    return Vote(voter, region, term, action, vote == "yes", reason, manual, float(cast_at), proof,
                requests=tuple(sorted(requests.items())))


def open_vote(proof: Proof, trust: TrustStore, federation: str) -> Vote:
    env = proof.open(trust, federation)
    if env.type != "vote":
        raise InvalidRecord(f"expected a vote, got {env.type!r}")
    return replace(parse_vote_body(env.sender, env.body, proof), signed_at=env.ts)


@dataclass(frozen=True)
class Record:
    """A filled (region, term) slot of the KV bucket: a committed decision, or an abandoned term."""

    outcome: str
    """``committed`` or ``abandoned``."""
    region: str
    term: int
    action: str
    target: str | None
    committed_by: str
    committed_at: float
    voters: tuple[str, ...] = ()
    reason: str = ""
    tier: str = ""
    manual: bool = False
    flapping: bool = False
    quorum: int = 0
    digest: str = ""
    """SHA-256 of the record's bytes in the bucket: every daemon applied the same one."""
    vote_signed_at: tuple[float, ...] = ()
    """When each quorum vote was last renewed by its voter (their clocks): how fresh the quorum was."""
    requests: tuple[tuple[str, str], ...] = ()
    """Operators' requests the quorum voted on: (requesting region, reason), from the signed votes."""

    @property
    def committed(self) -> bool:
        return self.outcome == "committed"


def record_body(record: Record, votes: list[Vote], configured: int) -> dict[str, Any]:
    return {
        "outcome": record.outcome, "region": record.region, "term": record.term, "action": record.action,
        "target": record.target, "tier": record.tier, "reason": record.reason, "manual": record.manual,
        "flapping": record.flapping, "quorum": record.quorum, "configured": configured,
        "voters": sorted(v.voter for v in votes), "committed_at": record.committed_at,
        "votes": [v.proof.to_json() for v in sorted(votes, key=lambda v: v.voter) if v.proof is not None],
    }


def encode_record(payload: bytes, headers: dict[str, str]) -> bytes:
    """The bucket value: the committer's signed envelope."""
    return json.dumps(Proof.from_message(payload, headers).to_json(), separators=(",", ":")).encode()


def decode_record(value: bytes, trust: TrustStore, federation: str, regions: Mapping[str, str],
                  key_region: str, key_term: int) -> Record:
    """Verify a bucket value for slot (``key_region``, ``key_term``); :class:`InvalidRecord` if it fails.

    A committed record must carry at least a strict majority of the
    configured regions' distinct, valid yes votes for exactly its region,
    term and action, and a target in the region's own jurisdiction.
    ``regions`` maps every configured region to its jurisdiction.
    """
    digest = hashlib.sha256(value).hexdigest()
    try:
        proof = Proof.from_json(json.loads(value))
    except ValueError:
        raise InvalidRecord("not JSON") from None
    env = proof.open(trust, federation)
    committer, body = env.sender, env.body
    if env.type != "decision":
        raise InvalidRecord(f"expected a decision, got {env.type!r}")
    try:
        outcome, region, term, action = body["outcome"], body["region"], body["term"], body["action"]
        committed_at = float(body["committed_at"])
    except (KeyError, TypeError, ValueError):
        raise InvalidRecord("a decision needs outcome, region, term, action and committed_at") from None
    if (region, term) != (key_region, key_term):
        raise InvalidRecord(f"record for {region}/{term} stored under {key_region}/{key_term}")
    if outcome not in ("committed", "abandoned") or action not in ACTIONS:
        raise InvalidRecord(f"unknown outcome {outcome!r} or action {action!r}")
    if region not in regions:
        raise InvalidRecord(f"region {region!r} is not configured")
    target = body.get("target")
    if target is not None and (target not in regions or regions[target] != regions[region]):
        raise InvalidRecord(f"target {target!r} is not a configured region of {region}'s jurisdiction")
    if outcome == "abandoned":
        return Record(outcome, region, term, action, None, committer, committed_at,
                      reason=str(body.get("reason", "")), digest=digest)
    floor = strict_majority(len(regions))
    quorum = body.get("quorum")
    if not isinstance(quorum, int) or quorum < floor:
        raise InvalidRecord(f"quorum {quorum!r} is below a strict majority ({floor})")
    voters: dict[str, float] = {}
    requests: dict[str, str] = {}
    for raw in body.get("votes") or []:
        vote = open_vote(Proof.from_json(raw), trust, federation)
        if vote.region != region or vote.term != term or vote.action != action or not vote.yes:
            raise InvalidRecord(f"the vote of {vote.voter} is not a yes on {region}/{term} {action}")
        if vote.voter not in regions:
            raise InvalidRecord(f"voter {vote.voter!r} is not a configured region")
        voters[vote.voter] = max(voters.get(vote.voter, 0.0), vote.signed_at)
        unknown = sorted(r for r, _ in vote.requests if r not in regions)
        if unknown:
            raise InvalidRecord(f"the vote of {vote.voter} names unknown requesting regions {unknown}")
        requests.update(vote.requests)
    if len(voters) < quorum:
        raise InvalidRecord(f"{len(voters)} distinct valid votes, quorum is {quorum}")
    return Record(outcome, region, term, action, target, committer, committed_at, tuple(sorted(voters)),
                  reason=str(body.get("reason", "")), tier=str(body.get("tier", "")),
                  manual=bool(body.get("manual", False)), flapping=bool(body.get("flapping", False)),
                  quorum=quorum, digest=digest, vote_signed_at=tuple(voters[v] for v in sorted(voters)),
                  requests=tuple(sorted(requests.items())))


def slot_key(region: str, term: int) -> str:
    """The bucket key of a (region, term) slot: ``d.<region>.<term>``."""
    return f"d.{region}.{term}"


def parse_slot_key(key: str) -> tuple[str, int] | None:
    parts = key.split(".")
    if len(parts) != 3 or parts[0] != "d" or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])
