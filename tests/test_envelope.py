"""The signed wire format: what is accepted, what is rejected and why (no NATS)."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshd.config import TrustBundle, TrustEntry
from meshd.envelope import HEADER_KEY_ID, HEADER_SIGNATURE, Opener, Reason, Rejected, Sealer
from meshd.identity import Signer, TrustStore, generate_key, key_id, public_key_b64

KEYS = {r: generate_key() for r in ("eu-west-1", "eu-central-1", "us-east-1")}
TRUST = TrustStore(TrustBundle(federation="acme", keys={
    r: TrustEntry(key_id=key_id(k.public_key()), public_key=public_key_b64(k.public_key())) for r, k in KEYS.items()
}))


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def sealer(region: str = "eu-west-1", incarnation: int = 1, federation: str = "acme",
           clock: Clock | None = None) -> Sealer:
    return Sealer(federation, region, Signer(KEYS[region]), incarnation, clock or Clock())


def opener(clock: Clock | None = None, **kw: object) -> Opener:
    return Opener("acme", TRUST, clock=clock or Clock(), **kw)  # type: ignore[arg-type]


def reason(fn: object) -> Reason:
    with pytest.raises(Rejected) as info:
        fn()  # type: ignore[operator]
    return info.value.reason


def test_a_sealed_envelope_opens_with_its_content() -> None:
    data, headers = sealer().seal("probe", {"n": 1, "s": "é"})
    env = opener().open(data, headers, subject_sender="eu-west-1")
    assert (env.sender, env.type, env.body, env.seq, env.incarnation) == ("eu-west-1", "probe", {"n": 1, "s": "é"}, 1, 1)


def test_unsigned_is_rejected() -> None:
    data, _ = sealer().seal("probe", {})
    assert reason(lambda: opener().open(data, None)) is Reason.UNSIGNED
    assert reason(lambda: opener().open(data, {HEADER_KEY_ID: "x"})) is Reason.UNSIGNED


def test_a_changed_byte_breaks_the_signature() -> None:
    data, headers = sealer().seal("probe", {"vote": "yes"})
    forged = data.replace(b'"yes"', b'"no!"')
    assert reason(lambda: opener().open(forged, headers)) is Reason.FORGED


def test_signed_by_another_region_is_forged() -> None:
    # eu-central-1 signs a message claiming to come from eu-west-1.
    s = Sealer("acme", "eu-west-1", Signer(KEYS["eu-central-1"]), 1, Clock())
    data, headers = s.seal("vote", {})
    assert reason(lambda: opener().open(data, headers)) is Reason.FORGED


def test_subject_must_name_the_signed_sender() -> None:
    data, headers = sealer().seal("probe", {})
    assert reason(lambda: opener().open(data, headers, subject_sender="us-east-1")) is Reason.FORGED


def test_unknown_sender_is_forged() -> None:
    stranger = generate_key()
    s = Sealer("acme", "ap-southeast-1", Signer(stranger), 1, Clock())
    data, headers = s.seal("probe", {})
    assert reason(lambda: opener().open(data, headers)) is Reason.FORGED


def test_another_federation_is_rejected() -> None:
    data, headers = sealer(federation="other").seal("probe", {})
    assert reason(lambda: opener().open(data, headers)) is Reason.WRONG_FEDERATION


def test_outside_the_clock_skew_window_is_stale() -> None:
    clock = Clock()
    data, headers = sealer(clock=Clock(clock.now - 31)).seal("probe", {})
    assert reason(lambda: opener(clock, clock_skew=30).open(data, headers)) is Reason.STALE
    data, headers = sealer(clock=Clock(clock.now + 31)).seal("probe", {})
    assert reason(lambda: opener(clock, clock_skew=30).open(data, headers)) is Reason.STALE
    data, headers = sealer(clock=Clock(clock.now - 29)).seal("probe", {})
    assert opener(clock, clock_skew=30).open(data, headers).type == "probe"


def test_a_replay_is_rejected_but_out_of_order_delivery_is_not() -> None:
    s, o = sealer(), opener()
    messages = [s.seal("probe", {"i": i}) for i in range(5)]
    for data, headers in (messages[1], messages[0], messages[4], messages[2], messages[3]):
        o.open(data, headers)
    for data, headers in messages:
        assert reason(lambda: o.open(data, headers)) is Reason.REPLAYED


def test_older_than_the_window_is_rejected() -> None:
    s, o = sealer(), opener(replay_window=64)
    first = s.seal("probe", {})
    for _ in range(100):
        o.open(*s.seal("probe", {}))
    assert reason(lambda: o.open(*first)) is Reason.REPLAYED


def test_a_restart_is_not_a_replay_but_the_old_incarnation_is() -> None:
    o = opener()
    old = sealer(incarnation=5)
    before = old.seal("probe", {})
    o.open(*before)
    new = sealer(incarnation=6)
    assert o.open(*new.seal("probe", {})).seq == 1  # seq starts over with the new incarnation
    assert reason(lambda: o.open(*old.seal("probe", {}))) is Reason.REPLAYED


def test_oversized_is_rejected_before_parsing() -> None:
    data, headers = sealer().seal("probe", {"pad": "x" * 2000})
    assert reason(lambda: opener(max_payload=1000).open(data, headers)) is Reason.OVERSIZED


@pytest.mark.parametrize("payload", [
    b"", b"not json", b"[]", b"{}", b'{"v": 1}', b"\xff\xfe", b"null",
    json.dumps({"v": 2, "federation": "acme", "sender": "eu-west-1", "incarnation": 1, "seq": 1, "ts": 1.0,
                "type": "t", "body": {}}).encode(),
    json.dumps({"v": 1, "federation": "acme", "sender": "eu-west-1", "incarnation": 1, "seq": 0, "ts": 1.0,
                "type": "t", "body": {}}).encode(),
    json.dumps({"v": 1, "federation": "acme", "sender": "eu-west-1", "incarnation": 1, "seq": True, "ts": 1.0,
                "type": "t", "body": {}}).encode(),
    json.dumps({"v": 1, "federation": "acme", "sender": "eu-west-1", "incarnation": 1, "seq": 1, "ts": 1.0,
                "type": "t", "body": []}).encode(),
])
def test_undecodable(payload: bytes) -> None:
    assert reason(lambda: opener().open(payload, {HEADER_SIGNATURE: "AA==", HEADER_KEY_ID: "x"})) is Reason.UNDECODABLE


def test_malformed_signature_header_is_forged() -> None:
    data, headers = sealer().seal("probe", {})
    headers[HEADER_SIGNATURE] = "!!!not base64!!!"
    assert reason(lambda: opener().open(data, headers)) is Reason.FORGED


# ---------------------------------------------------------------- property-based


def _open_never_raises_anything_but_rejected(o: Opener, payload: bytes, headers: dict[str, str] | None) -> None:
    try:
        o.open(payload, headers)
    except Rejected:
        pass


@settings(max_examples=400, deadline=None)
@given(payload=st.binary(max_size=2048),
       headers=st.none() | st.dictionaries(st.sampled_from([HEADER_SIGNATURE, HEADER_KEY_ID, "X"]),
                                           st.text(max_size=100)))
def test_random_bytes_never_escape_as_exceptions(payload: bytes, headers: dict[str, str] | None) -> None:
    _open_never_raises_anything_but_rejected(opener(), payload, headers)


_VALID, _HEADERS = sealer().seal("probe", {"a": [1, 2, {"b": None}], "c": "text"})
_OBJ = json.loads(_VALID)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=400, deadline=None)
@given(field=st.sampled_from(sorted(_OBJ)), value=json_values)
def test_mutated_fields_are_rejected_and_never_crash(field: str, value: object) -> None:
    mutated = dict(_OBJ, **{field: value})
    payload = json.dumps(mutated).encode()
    o = opener()
    try:
        env = o.open(payload, _HEADERS)
    except Rejected:
        return
    # Only a byte-identical re-encoding may pass, and then it is the original.
    assert payload == _VALID and env.body == _OBJ["body"]


@settings(max_examples=300, deadline=None)
@given(index=st.integers(min_value=0, max_value=len(_VALID) - 1), byte=st.integers(min_value=0, max_value=255))
def test_flipped_bytes_never_verify(index: int, byte: int) -> None:
    mutated = bytearray(_VALID)
    if mutated[index] == byte:
        return
    mutated[index] = byte
    with pytest.raises(Rejected):
        opener().open(bytes(mutated), _HEADERS)


@settings(max_examples=200, deadline=None)
@given(sig=st.binary(min_size=0, max_size=80))
def test_random_signatures_never_verify(sig: bytes) -> None:
    headers = dict(_HEADERS, **{HEADER_SIGNATURE: base64.b64encode(sig).decode()})
    with pytest.raises(Rejected):
        opener().open(_VALID, headers)
