"""Bodies of the membership messages, and their validation.

Every message is a signed envelope of kind ``swim`` (the bus checked who
sent it); this module checks what it says. A body that breaks a rule raises
:class:`BadMessage` naming the field, and the engine counts and drops it:
a peer's bug never takes a daemon down nor corrupts its view.

Claims travel compactly as ``{"r": region, "s": state, "i": incarnation,
"f": source, "h": health}``; "you" is the sender's view of the receiver,
``{"s": state, "i": incarnation}``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from meshd.members import MemberState

from .table import CLAIM_STATES, Claim

KIND = "swim"
MAX_CLAIMS = 1024
"""More claims than any federation has regions: a larger list is an error, not a big federation."""
MAX_INCARNATION = 2**53
HEALTH_VALUES = frozenset({"healthy", "degraded", "down"})
_STATES = {s.value: s for s in CLAIM_STATES}


class BadMessage(ValueError):
    """A membership message body that breaks the protocol; ``reason`` is the metric label."""

    def __init__(self, reason: str, detail: str):
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}")


def encode_claim(claim: Claim) -> dict[str, Any]:
    out: dict[str, Any] = {"r": claim.region, "s": claim.state.value, "i": claim.incarnation}
    if claim.source:
        out["f"] = claim.source
    if claim.health:
        out["h"] = claim.health
    return out


def encode_claims(claims: Iterable[Claim]) -> list[dict[str, Any]]:
    return [encode_claim(c) for c in claims]


def incarnation(value: Any, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_INCARNATION:
        raise BadMessage("bad_incarnation", f"{field} must be an integer from 0 to 2^53")
    return value


def region(value: Any, field: str, regions: Collection[str]) -> str:
    if not isinstance(value, str):
        raise BadMessage("bad_field", f"{field} must be a region name")
    if value not in regions:
        raise BadMessage("unknown_region", f"{field}: {value[:64]!r} is not a region of the federation")
    return value


def health(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if value not in HEALTH_VALUES:
        raise BadMessage("bad_field", f"{field} must be one of {sorted(HEALTH_VALUES)}")
    return str(value)


def decode_claim(raw: Any, regions: Collection[str], where: str) -> Claim:
    if not isinstance(raw, Mapping):
        raise BadMessage("bad_field", f"{where} must be an object")
    unknown = set(raw) - {"r", "s", "i", "f", "h"}
    if unknown:
        raise BadMessage("bad_field", f"{where} has unknown keys {sorted(unknown)[:5]}")
    state = _STATES.get(raw.get("s"))  # type: ignore[arg-type]
    if state is None:
        raise BadMessage("bad_state", f"{where}.s must be one of {sorted(_STATES)}")
    source = raw.get("f")
    return Claim(
        region=region(raw.get("r"), f"{where}.r", regions),
        state=state,
        incarnation=incarnation(raw.get("i"), f"{where}.i"),
        source=region(source, f"{where}.f", regions) if source is not None else None,
        health=health(raw.get("h"), f"{where}.h"),
    )


def decode_claims(body: Mapping[str, Any], key: str, regions: Collection[str],
                  skipped: list[str] | None = None) -> list[Claim]:
    """The claims under ``key``; a malformed one rejects the whole message.

    A claim about (or by) a region missing from our region map is skipped and
    named in ``skipped`` instead: while a region map change rolls out, daemons
    briefly disagree on the list, and the rest of the message is still good.
    """
    raw = body.get(key, [])
    if not isinstance(raw, list):
        raise BadMessage("bad_field", f"{key} must be a list")
    if len(raw) > MAX_CLAIMS:
        raise BadMessage("too_many_claims", f"{key} holds {len(raw)} claims (at most {MAX_CLAIMS})")
    out = []
    for i, item in enumerate(raw):
        try:
            out.append(decode_claim(item, regions, f"{key}[{i}]"))
        except BadMessage as exc:
            if exc.reason != "unknown_region" or skipped is None:
                raise
            skipped.append(exc.detail)
    return out


def decode_view(body: Mapping[str, Any]) -> tuple[MemberState, int] | None:
    """The ``you`` field: how the sender sees the receiver, or None if absent."""
    raw = body.get("you")
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise BadMessage("bad_field", "you must be an object")
    state = _STATES.get(raw.get("s"))  # type: ignore[arg-type]
    if state is None:
        raise BadMessage("bad_state", f"you.s must be one of {sorted(_STATES)}")
    return state, incarnation(raw.get("i"), "you.i")


def encode_view(state: MemberState, inc: int) -> dict[str, Any]:
    return {"s": state.value, "i": inc}


def sender_life(body: Mapping[str, Any]) -> tuple[int, str | None]:
    """The sender's own incarnation and health, which every ping, ack and sync carries."""
    return incarnation(body.get("inc"), "inc"), health(body.get("h"), "h")
