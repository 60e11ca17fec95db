"""Ciphertext parsing is strict and nothing but the original ciphertext, in its context, decrypts."""

from __future__ import annotations

import base64

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshd_plugins.keys import CiphertextError
from meshd_plugins.keys.ciphertext import blob_to_text, parse_text, text_to_blob

CTX = {"tenant": "acme", "field": "customer"}
PLAIN = b"acme corp, 1 Main St"


@pytest.fixture
def ring(make_manager):
    return make_manager().keyring("metering")


@pytest.mark.parametrize("text, code", [
    ("", "not_ciphertext"),
    ("vault:v1:AAAA", "not_ciphertext"),
    ("meshd:v1", "not_ciphertext"),
    ("meshd:v:AAAA", "bad_version"),
    ("meshd:v01:" + "A" * 40, "bad_version"),
    ("meshd:v0:" + "A" * 40, "bad_version"),
    ("meshd:v-1:" + "A" * 40, "bad_version"),
    ("meshd:v٣:" + "A" * 40, "bad_version"),           # an Arabic-Indic digit is a digit, not ASCII
    ("meshd:v4294967296:" + "A" * 40, "bad_version"),
    ("meshd:v99999999999:" + "A" * 40, "bad_version"),
    ("meshd:v1:" + "A" * 39, "not_base64"),            # not a multiple of 4
    ("meshd:v1:" + "A" * 36 + " AAA", "not_base64"),
    ("meshd:v1:" + "A" * 36 + "AAA\n", "not_base64"),
    ("meshd:v1:" + "A" * 36 + "-_AA", "not_base64"),   # URL-safe alphabet is another spelling
    ("meshd:v1:" + "A" * 40 + "====", "not_base64"),   # extra padding
    ("meshd:v1:" + "A" * 38 + "B=", "not_base64"),     # non-zero unused bits
    ("meshd:v1:AAAA", "truncated"),
    ("meshd:v1:" + "A" * 36, "truncated"),             # 27 bytes: one short of nonce + tag
])
def test_strict_parser_names_the_problem(text: str, code: str) -> None:
    with pytest.raises(CiphertextError) as err:
        parse_text(text)
    assert err.value.code == code
    assert str(err.value)  # an English sentence, never empty


def test_non_strings_are_rejected(ring) -> None:
    for value in (None, b"meshd:v1:AAAA", 42):
        with pytest.raises(CiphertextError) as err:
            ring.decrypt(value, CTX)  # type: ignore[arg-type]
        assert err.value.code == "not_ciphertext"


def test_round_trip_text_and_binary(ring) -> None:
    text = ring.encrypt(PLAIN, CTX)
    assert text.startswith("meshd:v1:")
    assert ring.decrypt(text, CTX) == PLAIN
    blob = ring.seal(PLAIN, CTX)
    assert blob[:8] == b"MSK1\x00\x00\x00\x01"
    assert ring.open(blob, CTX) == PLAIN
    # The two forms are one ciphertext in two spellings.
    assert ring.decrypt(blob_to_text(blob), CTX) == PLAIN
    assert ring.open(text_to_blob(text), CTX) == PLAIN
    assert ring.open(bytearray(blob), CTX) == PLAIN and ring.open(memoryview(blob), CTX) == PLAIN
    bound = ring.bind(CTX)
    assert bound.decrypt(ring.encrypt(PLAIN, CTX)) == PLAIN and ring.open(bound.seal(PLAIN), CTX) == PLAIN
    assert ring.decrypt(bound.encrypt(b""), dict(reversed(list(CTX.items())))) == b""  # key order is irrelevant


def test_fresh_nonce_every_time(ring) -> None:
    texts = {ring.encrypt(PLAIN, CTX) for _ in range(200)}
    assert len(texts) == 200
    nonces = {base64.b64decode(t.split(":", 2)[2])[:12] for t in texts}
    assert len(nonces) == 200


@pytest.mark.parametrize("other", [
    {"tenant": "acme"},                                        # a key missing
    {"tenant": "acme", "field": "customer", "extra": ""},     # a key more
    {"tenant": "acme2", "field": "customer"},                 # another value
    {"tenant": "acme", "field": "customer "},
    {"tenantf": "ield", "field": "customer"},                 # same bytes, other split
    {},
])
def test_wrong_context_fails(ring, other) -> None:
    text = ring.encrypt(PLAIN, CTX)
    with pytest.raises(CiphertextError) as err:
        ring.decrypt(text, other)
    assert err.value.code == "auth_failed"
    assert "eu-west-1/metering" in str(err.value) and "context" in str(err.value)
    with pytest.raises(CiphertextError):
        ring.open(ring.seal(PLAIN, CTX), other)


def test_other_purpose_and_other_region_fail(make_manager, ring) -> None:
    text = ring.encrypt(PLAIN, CTX)
    same_region = make_manager().keyring("metering2")        # same state dir and KEK, other purpose
    other_region = make_manager(region="eu-central-1", state="other").keyring("metering")
    for other in (same_region, other_region):
        with pytest.raises(CiphertextError) as err:
            other.decrypt(text, CTX)
        assert err.value.code == "auth_failed"


def test_the_version_is_authenticated(ring) -> None:
    """The prefix is not authenticated by itself: relabelling v1 as v2 must fail, not decrypt under v2."""
    text = ring.encrypt(PLAIN, CTX)
    ring.rotate()
    relabelled = "meshd:v2:" + text.split(":", 2)[2]
    with pytest.raises(CiphertextError) as err:
        ring.decrypt(relabelled, CTX)
    assert err.value.code == "auth_failed"
    blob = bytearray(ring.seal(PLAIN, CTX))
    blob[7] = 1  # v2 -> v1
    with pytest.raises(CiphertextError):
        ring.open(bytes(blob), CTX)


def test_unknown_version_names_the_latest(ring) -> None:
    text = ring.encrypt(PLAIN, CTX)
    with pytest.raises(CiphertextError) as err:
        ring.decrypt("meshd:v7:" + text.split(":", 2)[2], CTX)
    assert err.value.code == "unknown_version"
    assert err.value.params == {"keyring": "eu-west-1/metering", "version": 7, "latest": 1}


def test_bad_arguments(ring) -> None:
    with pytest.raises(CiphertextError) as err:
        ring.encrypt("text", CTX)  # type: ignore[arg-type]
    assert err.value.code == "not_bytes"
    for context in ({"tenant": 3}, {3: "x"}, {"tenant": ["a"]}, ["tenant"]):
        with pytest.raises(CiphertextError) as err:
            ring.encrypt(PLAIN, context)  # type: ignore[arg-type]
        assert err.value.code == "bad_context"
    with pytest.raises(CiphertextError) as err:
        ring.open("MSK1", CTX)  # type: ignore[arg-type]
    assert err.value.code == "not_bytes"
    for blob, code in ((b"", "bad_header"), (b"MSK2" + b"\x00" * 40, "bad_header"),
                       (b"MSK1\x00\x00\x00\x00" + b"\x00" * 40, "bad_version"),
                       (b"MSK1\x00\x00\x00\x01" + b"\x00" * 27, "truncated")):
        with pytest.raises(CiphertextError) as err:
            ring.open(blob, CTX)
        assert err.value.code == code


# ---------------------------------------------------------------- mutations (hypothesis)

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=:mesdhv-_ \n\x00é"


@st.composite
def text_mutation(draw: st.DrawFn, text: str) -> str:
    kind = draw(st.sampled_from(["replace", "insert", "delete", "truncate", "swap"]))
    i = draw(st.integers(0, len(text) - 1))
    if kind == "replace":
        return text[:i] + draw(st.sampled_from(ALPHABET)) + text[i + 1:]
    if kind == "insert":
        return text[:i] + draw(st.text(ALPHABET, min_size=1, max_size=4)) + text[i:]
    if kind == "delete":
        j = draw(st.integers(i + 1, len(text)))
        return text[:i] + text[j:]
    if kind == "truncate":
        return text[:i]
    j = draw(st.integers(0, len(text) - 1))
    chars = list(text)
    chars[i], chars[j] = chars[j], chars[i]
    return "".join(chars)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), plaintext=st.binary(max_size=64))
def test_no_mutated_text_ciphertext_decrypts(ring, data, plaintext) -> None:
    text = ring.encrypt(plaintext, CTX)
    mutated = data.draw(text_mutation(text))
    if mutated == text:
        assert ring.decrypt(mutated, CTX) == plaintext
        return
    # Canonical parsing means one spelling per ciphertext: any other string is an error.
    with pytest.raises(CiphertextError):
        ring.decrypt(mutated, CTX)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), plaintext=st.binary(max_size=64))
def test_no_mutated_binary_ciphertext_decrypts(ring, data, plaintext) -> None:
    blob = bytearray(ring.seal(plaintext, CTX))
    kind = data.draw(st.sampled_from(["flip", "truncate", "extend"]))
    if kind == "flip":
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] ^= data.draw(st.integers(1, 255))
    elif kind == "truncate":
        blob = blob[:data.draw(st.integers(0, len(blob) - 1))]
    else:
        blob += data.draw(st.binary(min_size=1, max_size=8))
    with pytest.raises(CiphertextError):
        ring.open(bytes(blob), CTX)
