"""Ciphertext written by an earlier release still decrypts: the format is a promise to stored data.

``data/`` holds a keyring (with its local KEK, made for this test only) and
ciphertexts sealed by the keyring code as it was before the hot-path rework
of 2026-12; the current code must open every one of them, in its context only.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from meshd_plugins.keys import CiphertextError
from meshd_plugins.keys.manager import KeyManager
from meshd_plugins.keys.settings import KeysConfig

DATA = Path(__file__).parent / "data"


@pytest.fixture
def stored(tmp_path: Path):
    state = tmp_path / "state"
    shutil.copytree(DATA / "state-2026-12", state)
    state.chmod(0o700)
    (state / "keys").chmod(0o700)
    for f in (state / "keys").iterdir():
        f.chmod(0o600)  # git keeps no modes; the KEK file must be private
    doc = json.loads((DATA / "ciphertexts-2026-12.json").read_text())
    ring = KeyManager(region=doc["region"], state_dir=state, cfg=KeysConfig()).keyring(doc["purpose"], create=False)
    return ring, doc


def test_stored_ciphertexts_of_both_versions_decrypt(stored) -> None:
    ring, doc = stored
    plain, ctx = doc["plaintext"].encode(), doc["context"]
    assert ring.latest_version == 2
    assert ring.decrypt(doc["text_v1"], ctx) == plain
    assert ring.decrypt(doc["text_v2"], ctx) == plain
    assert ring.decrypt(doc["text_v1_no_context"]) == plain
    assert ring.open(bytes.fromhex(doc["blob_v1"]), ctx) == plain
    assert ring.open(bytes.fromhex(doc["blob_v2"]), ctx) == plain
    # The cached associated data follows the context: the same calls again, interleaved.
    assert ring.open(bytes.fromhex(doc["blob_v1"]), dict(ctx)) == plain
    assert ring.decrypt(doc["text_v1_no_context"], None) == plain


@pytest.mark.parametrize("other", [None, {}, {"tenant": "acme-corp"}, {"tenant": "acme-corp", "field": "other"}])
def test_stored_ciphertexts_need_their_context(stored, other) -> None:
    ring, doc = stored
    ctx = doc["context"]
    assert ring.open(bytes.fromhex(doc["blob_v1"]), ctx) == doc["plaintext"].encode()  # primes the cache
    for attempt in (lambda: ring.open(bytes.fromhex(doc["blob_v1"]), other),
                    lambda: ring.decrypt(doc["text_v2"], other)):
        with pytest.raises(CiphertextError) as err:
            attempt()
        assert err.value.code == "auth_failed"


def test_a_context_changed_after_the_call_does_not_change_the_cache(stored) -> None:
    ring, doc = stored
    plain, ctx = doc["plaintext"].encode(), dict(doc["context"])
    blob = ring.seal(plain, ctx)
    ctx["field"] = "other"  # the caller reuses its dict
    with pytest.raises(CiphertextError):
        ring.open(blob, ctx)
    assert ring.open(blob, doc["context"]) == plain
