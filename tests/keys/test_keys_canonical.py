"""The text form's base64 check against its definition: exactly the canonical spellings decode.

parse_payload leans on ``binascii.a2b_base64(strict_mode=True)`` for most
of the strictness; this property test holds it to the plain definition (a
payload is accepted if and only if re-encoding its bytes gives it back), on
endings built from the characters that tell spellings apart.
"""

from __future__ import annotations

import binascii

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshd_plugins.keys.ciphertext import MIN_PAYLOAD, parse_payload
from meshd_plugins.keys.errors import CiphertextError

BODY = "A" * 40  # 30 bytes: past the nonce and tag, so only the ending decides
ENDINGS = st.text(alphabet="AQgwBCDE/+9=-_ \né", max_size=9)


def canonical(payload: str) -> bool:
    try:
        raw = binascii.a2b_base64(payload)
    except (binascii.Error, ValueError):
        return False
    return binascii.b2a_base64(raw, newline=False).decode("ascii") == payload


@settings(max_examples=400, deadline=None)
@given(ENDINGS)
def test_exactly_the_canonical_spellings_are_accepted(ending: str) -> None:
    payload = BODY + ending
    try:
        raw = parse_payload(payload)
    except CiphertextError as exc:
        assert exc.code == "not_base64"
        assert not canonical(payload)
    else:
        assert canonical(payload)
        assert len(raw) >= MIN_PAYLOAD


@pytest.mark.parametrize("ending", ["AA==", "AB==", "AP==", "AQ==", "AAA=", "AAB=", "AAD=", "AAE="])
def test_unused_bits_of_a_padded_end_must_be_zero(ending: str) -> None:
    payload = BODY + ending
    if canonical(payload):
        assert parse_payload(payload) == binascii.a2b_base64(payload)
    else:
        with pytest.raises(CiphertextError) as err:
            parse_payload(payload)
        assert err.value.code == "not_base64"
