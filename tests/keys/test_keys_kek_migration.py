"""Moving keyrings to another KEK (``migrate-kek``), rewrapping under a rotated KMS key, and the data-key TTL.

These run on the builtin ``local`` provider (two KEK files) and a
provider that can be told to refuse or to stop answering; the same paths
against a real OpenBao server are in ``tests/kms/test_kms_migrate.py``.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from meshd.kms import KMSProvider, KMSUnavailableError
from meshd_plugins.keys.errors import KEKError
from meshd_plugins.keys.kek import LocalKMSProvider
from meshd_plugins.keys.manager import KeyManager
from meshd_plugins.keys.settings import KeysConfig

REGION = "eu-west-1"


def new_kek(path: Path) -> Path:
    path.write_bytes(base64.b64encode(os.urandom(32)))
    path.chmod(0o600)
    return path


def manager(state: Path, kms: dict[str, Any], migrate_to: dict[str, Any] | None = None,
            **more: Any) -> KeyManager:
    cfg = KeysConfig(kms=kms, migrate_to=migrate_to, **more)
    return KeyManager(region=REGION, state_dir=state, cfg=cfg)


def recorded_kek(state: Path, purpose: str) -> dict[str, str]:
    kek: dict[str, str] = json.loads((state / "keys" / f"{purpose}.json").read_text())["kek"]
    return kek


@pytest.fixture
def two_keks(tmp_path: Path) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    old = {"provider": "local", "kek_file": str(tmp_path / "old.kek")}
    new = {"provider": "local", "kek_file": str(new_kek(tmp_path / "new.kek"))}
    return tmp_path / "state", old, new


def test_migrating_keeps_every_ciphertext_and_the_old_kek_can_go(two_keks) -> None:  # type: ignore[no-untyped-def]
    state, old, new = two_keks
    before = manager(state, old)
    rings = before.open_all(["metering", "secrets"])
    stored = {r.purpose: r.encrypt(b"usage of acme", {"tenant": "acme"}) for r in rings}
    before.keyring("metering").rotate()
    stored["metering-v2"] = before.keyring("metering").encrypt(b"after rotation", {"tenant": "acme"})
    old_id = LocalKMSProvider.from_settings({**old, "keys_dir": str(state / "keys")}).kek_id

    moving = manager(state, old, migrate_to=new)
    done = moving.rewrap_kek(migrate=True)

    new_id = LocalKMSProvider.from_settings({**new, "keys_dir": str(state / "keys")}).kek_id
    assert sorted((d["keyring"], d["versions"]) for d in done) == [("eu-west-1/metering", 2),
                                                                  ("eu-west-1/secrets", 1)]
    assert {d["kek"]["kek_id"] for d in done} == {new_id} != {old_id}
    assert recorded_kek(state, "metering") == {"provider": "local", "kek_id": new_id}
    Path(old["kek_file"]).unlink()
    after = manager(state, new)  # the config now names the new KEK only
    ring = after.keyring("metering", create=False)
    assert ring.decrypt(stored["metering"], {"tenant": "acme"}) == b"usage of acme"
    assert ring.decrypt(stored["metering-v2"], {"tenant": "acme"}) == b"after rotation"
    assert after.keyring("secrets", create=False).decrypt(stored["secrets"], {"tenant": "acme"}) == b"usage of acme"
    assert ring.rotate()["version"] == 3  # the new version is wrapped by the new KEK too
    assert manager(state, new).keyring("metering", create=False).latest_version == 3


def test_a_keyring_in_use_keeps_serving_while_it_is_migrated(two_keks) -> None:  # type: ignore[no-untyped-def]
    state, old, new = two_keks
    moving = manager(state, old, migrate_to=new)
    # Made before the migration target was set: on the old KEK.
    manager(state, old).keyring("metering")
    ring = moving.keyring("metering")
    assert recorded_kek(state, "metering")["kek_id"] != LocalKMSProvider.from_settings(
        {**new, "keys_dir": str(state / "keys")}).kek_id
    text = ring.encrypt(b"x", {"tenant": "t"})
    moving.rewrap_kek(migrate=True)
    # Same object, same data keys: nothing a caller holds changes.
    assert ring.decrypt(text, {"tenant": "t"}) == b"x"
    assert ring.decrypt(ring.encrypt(b"y", {"tenant": "t"}), {"tenant": "t"}) == b"y"
    assert ring.rotate()["kek"] == recorded_kek(state, "metering")


def test_a_migration_cut_short_opens_each_keyring_with_its_own_kek_and_finishes(two_keks) -> None:  # type: ignore[no-untyped-def]
    state, old, new = two_keks
    first = manager(state, old)
    texts = {p: first.keyring(p).encrypt(p.encode(), {"k": "v"}) for p in ("a", "b")}
    manager(state, old, migrate_to=new).rewrap_kek(["a"], migrate=True)  # stopped after one keyring

    restarted = manager(state, old, migrate_to=new)
    assert {p: restarted.keyring(p, create=False).decrypt(t, {"k": "v"}) for p, t in texts.items()} == \
        {"a": b"a", "b": b"b"}
    assert recorded_kek(state, "a") != recorded_kek(state, "b")
    # New keyrings go to the target while it is set.
    restarted.keyring("c")
    assert recorded_kek(state, "c") == recorded_kek(state, "a")
    restarted.rewrap_kek(migrate=True)  # run again: finishes, and redoing "a" and "c" is harmless
    assert recorded_kek(state, "a") == recorded_kek(state, "b") == recorded_kek(state, "c")
    Path(old["kek_file"]).unlink()
    assert manager(state, new).keyring("b", create=False).decrypt(texts["b"], {"k": "v"}) == b"b"


def test_migrate_without_a_target_or_to_a_kek_that_does_not_exist_changes_nothing(two_keks) -> None:  # type: ignore[no-untyped-def]
    state, old, _new = two_keks
    manager(state, old).keyring("metering")
    before = (state / "keys" / "metering.json").read_bytes()
    with pytest.raises(KEKError, match="there is no keys.migrate_to"):
        manager(state, old).rewrap_kek(migrate=True)
    missing = {"provider": "local", "kek_file": str(state.parent / "nowhere.kek")}
    # A migration target's KEK is never made up on the spot: keyrings exist, so a missing file is an error.
    with pytest.raises(KEKError, match="does not exist"):
        manager(state, old, migrate_to=missing).rewrap_kek(migrate=True)
    assert (state / "keys" / "metering.json").read_bytes() == before


class Switchable(KMSProvider):
    """The local provider, told to stop answering (an outage) or to refuse (a revoked KEK)."""

    name = "local"

    def __init__(self, inner: KMSProvider):
        self.inner = inner
        self.mode = "up"
        self.unwraps = 0

    def wrap(self, plaintext_key: bytes, context: dict[str, str]) -> bytes:
        return self.inner.wrap(plaintext_key, context)

    def unwrap(self, wrapped_key: bytes, context: dict[str, str]) -> bytes:
        self.unwraps += 1
        if self.mode == "down":
            raise KMSUnavailableError("connection refused")
        if self.mode == "revoked":
            raise ValueError("the key is disabled")
        return self.inner.unwrap(wrapped_key, context)

    def describe(self) -> dict[str, str]:
        return self.inner.describe()


@pytest.fixture
def switchable(tmp_path: Path) -> tuple[KeyManager, Switchable]:
    m = manager(tmp_path, {"provider": "local"})
    provider = Switchable(m.provider)
    m._providers["kms"] = provider  # what open_provider returned, wrapped
    return m, provider


def test_data_keys_past_their_ttl_are_confirmed_by_the_kms(switchable) -> None:  # type: ignore[no-untyped-def]
    m, provider = switchable
    ring = m.keyring("metering")
    t0 = ring._dec[1].unwrapped_at
    assert ring.revalidate(3600.0, now=t0 + 10) == {"confirmed": [], "dropped": [], "unreachable": []}
    unwraps = provider.unwraps
    assert ring.revalidate(3600.0, now=t0 + 3601) == {"confirmed": [1], "dropped": [], "unreachable": []}
    assert provider.unwraps == unwraps + 1
    assert ring.revalidate(3600.0, now=t0 + 3700) == {"confirmed": [], "dropped": [], "unreachable": []}


def test_a_kms_that_does_not_answer_leaves_the_keys_in_use(switchable) -> None:  # type: ignore[no-untyped-def]
    m, provider = switchable
    ring = m.keyring("metering")
    text = ring.encrypt(b"kept", {"t": "1"})
    provider.mode = "down"
    t0 = ring._dec[1].unwrapped_at
    assert ring.revalidate(60.0, now=t0 + 61) == {"confirmed": [], "dropped": [], "unreachable": [1]}
    assert ring.decrypt(text, {"t": "1"}) == b"kept"
    assert ring.decrypt(ring.encrypt(b"more", {"t": "1"}), {"t": "1"}) == b"more"


def test_a_kek_the_kms_refuses_stops_the_keyring_within_the_ttl(switchable) -> None:  # type: ignore[no-untyped-def]
    m, provider = switchable
    ring = m.keyring("metering")
    text = ring.encrypt(b"revoke me", {"t": "1"})
    provider.mode = "revoked"
    t0 = ring._dec[1].unwrapped_at
    assert m.revalidate(60.0) == {"metering": {"confirmed": [], "dropped": [], "unreachable": []}}
    assert ring.revalidate(60.0, now=t0 + 61) == {"confirmed": [], "dropped": [1], "unreachable": []}
    with pytest.raises(KEKError, match="cannot unwrap version 1"):
        ring.decrypt(text, {"t": "1"})
    with pytest.raises(KEKError, match="cannot unwrap version 1"):
        ring.encrypt(b"no", {"t": "1"})
    provider.mode = "up"  # re-enabled in the KMS: the next use unwraps again
    assert ring.decrypt(text, {"t": "1"}) == b"revoke me"


def test_rewrap_with_the_same_kek_changes_the_wraps_not_the_keys(tmp_path: Path) -> None:
    m = manager(tmp_path, {"provider": "local"})
    ring = m.keyring("metering")
    text = ring.encrypt(b"same key", {"t": "1"})
    path = tmp_path / "keys" / "metering.json"
    before = json.loads(path.read_text())
    [done] = m.rewrap_kek()
    after = json.loads(path.read_text())
    assert done["versions"] == 1 and after["kek"] == before["kek"]
    assert after["versions"][0]["wrapped"] != before["versions"][0]["wrapped"]
    assert after["versions"][0]["fingerprint"] == before["versions"][0]["fingerprint"]
    assert after["index_key"] != before["index_key"]
    assert manager(tmp_path, {"provider": "local"}).keyring("metering").decrypt(text, {"t": "1"}) == b"same key"
