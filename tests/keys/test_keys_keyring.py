"""Keyring lifecycle: rotation, minimum versions, rewrap, count-based rotation and its crash safety."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from meshd_plugins.keys import CiphertextError, PolicyError
from meshd_plugins.keys.keyfile import KeyringFile
from meshd_plugins.keys.settings import KeysConfig

CTX = {"tenant": "acme"}


class Clock:
    """A settable clock for age-based rotation."""

    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def reserved(path: Path) -> dict[int, int]:
    doc, _ = KeyringFile(path).read()
    return {v: r.reserved for v, r in doc.versions.items()}


def test_rotate_keeps_old_ciphertexts_readable(make_manager) -> None:
    ring = make_manager().keyring("metering")
    old = [ring.encrypt(f"record {i}".encode(), CTX) for i in range(5)]
    old_blob = ring.seal(b"blob", CTX)
    meta = ring.rotate()
    assert meta["version"] == 2 and meta["versions"] == 2
    new = ring.encrypt(b"new", CTX)
    assert new.startswith("meshd:v2:")
    assert [ring.decrypt(c, CTX) for c in old] == [f"record {i}".encode() for i in range(5)]
    assert ring.open(old_blob, CTX) == b"blob"
    assert ring.needs_rewrap(old[0]) and not ring.needs_rewrap(new)
    # A second process (another manager on the same files) sees the rotation.
    other = make_manager().keyring("metering")
    assert other.latest_version == 2 and other.decrypt(old[0], CTX) == b"record 0"


def test_raising_min_decryption_version_retires_old_ciphertexts_but_not_rewrapped_ones(make_manager) -> None:
    ring = make_manager().keyring("metering")
    kept, rewrapped = ring.encrypt(b"kept at v1", CTX), ring.encrypt(b"moved to v2", CTX)
    kept_blob = ring.seal(b"blob at v1", CTX)
    ring.rotate()
    rewrapped = ring.rewrap(rewrapped, CTX)
    assert rewrapped.startswith("meshd:v2:")
    assert ring.rewrap(rewrapped, CTX) == rewrapped  # already current: unchanged
    ring.set_min_versions(decryption=2)
    assert ring.decrypt(rewrapped, CTX) == b"moved to v2"
    for attempt in (lambda: ring.decrypt(kept, CTX), lambda: ring.open(kept_blob, CTX),
                    lambda: ring.rewrap(kept, CTX)):
        with pytest.raises(CiphertextError) as err:
            attempt()
        assert err.value.code == "retired_version"
        assert "retired" in str(err.value) and "min_decryption_version is 2" in str(err.value)
    # Another process opening the keyring later enforces the same minimum.
    with pytest.raises(CiphertextError):
        make_manager().keyring("metering").decrypt(kept, CTX)
    # Wrapped keys are kept: lowering the minimum again (before anything is lost) works.
    ring.set_min_versions(decryption=1)
    assert ring.decrypt(kept, CTX) == b"kept at v1"


def test_minimum_versions_are_checked(make_manager) -> None:
    ring = make_manager().keyring("metering")
    ring.rotate()
    for kwargs in ({"decryption": 0}, {"decryption": 3}, {"encryption": 5}, {"decryption": True}):
        with pytest.raises(PolicyError) as err:
            ring.set_min_versions(**kwargs)
        assert err.value.code == "bad_min_version"
    assert ring.min_decryption_version == 1 and ring.min_encryption_version == 1


def test_min_encryption_version_bounds_pinned_versions(make_manager) -> None:
    ring = make_manager().keyring("metering")
    ring.rotate()
    ring.rotate()
    pinned = ring.encrypt(b"staged", CTX, version=2)
    assert pinned.startswith("meshd:v2:") and ring.decrypt(pinned, CTX) == b"staged"
    ring.set_min_versions(encryption=3)
    with pytest.raises(PolicyError) as err:
        ring.encrypt(b"staged", CTX, version=2)
    assert err.value.code == "version_not_allowed"
    assert ring.decrypt(pinned, CTX) == b"staged"  # decryption is not affected
    assert ring.encrypt(b"x", CTX).startswith("meshd:v3:")


def test_count_based_rotation_with_a_low_threshold(make_manager) -> None:
    rotations = []
    manager = make_manager(max_encryptions_per_version=10, count_reserve_block=3,
                           on_rotated=lambda ring, meta, reason: rotations.append((meta["version"], reason)))
    ring = manager.keyring("metering")
    texts = [ring.encrypt(str(i).encode(), CTX) for i in range(35)]
    blobs = [ring.seal(str(i).encode(), CTX) for i in range(10)]
    assert rotations == [(2, "count"), (3, "count"), (4, "count"), (5, "count")]
    counts = reserved(manager.path_of("metering"))
    assert all(n <= 10 for n in counts.values()), counts
    assert sum(counts.values()) >= 45
    versions = [int(t.split(":")[1][1:]) for t in texts]
    assert versions == sorted(versions) and versions[-1] == 4
    assert [ring.decrypt(t, CTX) for t in texts] == [str(i).encode() for i in range(35)]
    assert [ring.open(b, CTX) for b in blobs] == [str(i).encode() for i in range(10)]


def test_counts_hold_across_threads_and_processes(make_manager) -> None:
    manager = make_manager(max_encryptions_per_version=300, count_reserve_block=7)
    ring = manager.keyring("metering")
    other = make_manager(max_encryptions_per_version=300, count_reserve_block=5).keyring("metering")
    out: list[str] = []
    lock = threading.Lock()

    def work(r):
        local = [r.encrypt(b"x", CTX) for _ in range(250)]
        with lock:
            out.extend(local)

    threads = [threading.Thread(target=work, args=(r,)) for r in (ring, ring, other, other)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    counts = reserved(manager.path_of("metering"))
    assert all(n <= 300 for n in counts.values()), counts
    assert sum(counts.values()) >= 1000
    assert len(counts) >= 4  # 1000 encryptions at 300 per version
    assert all(ring.decrypt(t, CTX) == b"x" for t in out)


CRASHER = """
import os, sys
from pathlib import Path
from meshd_plugins.keys.manager import KeyManager
from meshd_plugins.keys.settings import KeysConfig
m = KeyManager(region="eu-west-1", state_dir=Path(sys.argv[1]),
               cfg=KeysConfig(max_encryptions_per_version=1000, count_reserve_block=100))
ring = m.keyring("metering")
for _ in range(int(sys.argv[2])):
    ring.encrypt(b"x")
sys.stdout.write("done\\n"); sys.stdout.flush()
os._exit(137)  # a crash: no cleanup, no flush of anything the keyring did not already persist
"""


def test_a_crash_never_lets_a_count_be_reused(tmp_path: Path) -> None:
    """Counts are reserved (persisted) before use: after a crash the next process starts above them."""
    state = tmp_path / "state"
    path = state / "keys" / "metering.json"
    for used, expected in ((1, 100), (150, 300), (1, 400)):
        proc = subprocess.run([sys.executable, "-c", CRASHER, str(state), str(used)], capture_output=True, text=True)
        assert proc.returncode == 137 and proc.stdout == "done\n", proc.stderr
        # Each crashed process had used `used` counts; the file covers them and the next block starts above.
        assert reserved(path) == {1: expected}


def test_age_based_rotation(make_manager) -> None:
    clock = Clock()
    rotations = []
    manager = make_manager(clock=clock, auto_rotate_period="2h",
                           on_rotated=lambda ring, meta, reason: rotations.append(reason))
    ring = manager.keyring("metering")
    clock.now += 2 * 3600 - 1
    assert manager.rotate_due() == [] and ring.latest_version == 1
    clock.now += 1
    rotated = manager.rotate_due()
    assert [m["version"] for m in rotated] == [2] and rotations == ["age"]
    assert ring.created() == clock.now
    described = manager.describe(ring)
    assert described["rotate_by"] == clock.now + 7200 and not described["overdue"]
    clock.now += 7200 + 86400 + 1  # past the due date and the default 1-day grace
    assert manager.describe(ring)["overdue"]


def test_rotation_settings_are_validated() -> None:
    assert KeysConfig(auto_rotate_period="1h").auto_rotate_period == 3600
    assert KeysConfig(auto_rotate_period=0).auto_rotate_period == 0
    assert KeysConfig().auto_rotate_period == 90 * 86400
    for bad in ({"auto_rotate_period": "30m"}, {"max_encryptions_per_version": 2**31 + 1},
                {"max_encryptions_per_version": 0}, {"purposes": ["Bad Name"]},
                {"service": {"purposes": ["secrets"]}}, {"kms": {"kek_credential": "../x"}}):
        with pytest.raises(ValidationError):
            KeysConfig(**bad)


def test_blind_index_is_keyed_stable_and_per_keyring(make_manager) -> None:
    ring = make_manager().keyring("metering")
    first = ring.blind_index(b"acme")
    assert len(first) == 32 and int(first, 16) >= 0
    ring.rotate()
    assert ring.blind_index(b"acme") == first  # lookups survive rotation
    assert ring.blind_index(b"acme2") != first
    assert make_manager().keyring("other").blind_index(b"acme") != first
    assert make_manager(state="elsewhere").keyring("metering").blind_index(b"acme") != first
    with pytest.raises(CiphertextError):
        ring.blind_index("acme")  # type: ignore[arg-type]


def test_rewrap_sources_move_stored_records(make_manager) -> None:
    ring = make_manager().keyring("metering")
    store = {f"r{i}": ring.encrypt(f"v{i}".encode(), {"record": f"r{i}"}) for i in range(4)}

    def rewrap_store(keyring) -> int:
        changed = 0
        for key, value in store.items():
            new = keyring.rewrap(value, {"record": key})
            if new != value:
                store[key] = new
                changed += 1
        return changed

    def broken(_keyring) -> int:
        raise OSError("disk full")

    ring.register_rewrap_source("ledger", rewrap_store)
    ring.register_rewrap_source("broken", broken)
    ring.rotate()
    results = ring.rewrap_sources()
    assert results["ledger"] == {"rewrapped": 4}
    assert "disk full" in results["broken"]["error"]
    assert ring.rewrap_sources()["ledger"] == {"rewrapped": 0}  # idempotent
    ring.set_min_versions(decryption=2)
    assert {k: ring.decrypt(v, {"record": k}) for k, v in store.items()} == {f"r{i}": f"v{i}".encode()
                                                                             for i in range(4)}


def test_keyring_file_holds_no_plain_key_and_is_private(make_manager) -> None:
    manager = make_manager()
    ring = manager.keyring("metering")
    path = manager.path_of("metering")
    assert path.stat().st_mode & 0o777 == 0o600
    assert (manager.keys_dir / "kek").stat().st_mode & 0o777 == 0o600
    assert manager.keys_dir.stat().st_mode & 0o777 == 0o700
    doc = json.loads(path.read_text())
    assert doc["format"] == "meshd-keyring/1" and doc["versions"][0]["wrapped"]
    assert "Keyring('eu-west-1/metering', version=1)" == repr(ring)


def test_damaged_keyring_file_is_named(make_manager) -> None:
    manager = make_manager()
    manager.keyring("metering")
    path = manager.path_of("metering")
    doc = json.loads(path.read_text())
    doc["versions"][0]["fingerprint"] = "0" * 32
    path.write_text(json.dumps(doc))
    with pytest.raises(Exception) as err:
        make_manager().keyring("metering")
    assert "metering.json" in str(err.value) and "fingerprint" in str(err.value)
    path.write_text("{not json")
    with pytest.raises(Exception) as err:
        make_manager().keyring("metering")
    assert "damaged" in str(err.value) and "not JSON" in str(err.value)
