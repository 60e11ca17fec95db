"""The keys plugin's two numbers: keyring throughput against bare AES-GCM, and rotation propagation.

    python bench/keys_bench.py [--records 20000] [--rounds 7] [--rotations 10] [--regions 7] [--skip-federation]
                               [--baseline-keyring FILE] [--fixed-order]

Part 1, throughput (one process, no NATS): encrypt + decrypt of 4 KiB
records, each path run ``--rounds`` times interleaved with the others (so
machine noise hits all alike); the best round of each is reported, with its
ratio to the bare baseline of the same run:

* bare AESGCM        what a careful caller writes by hand: a random 96-bit
                     nonce per record, ``nonce || AESGCM.encrypt(...)``, a
                     fixed associated data, then ``AESGCM.decrypt``;
* keyring bound      ``ring.bind(context).seal / .open``: the binary form,
                     context fixed for a batch (a ledger writing one
                     tenant's records);
* keyring seal/open  ``ring.seal(record, context) / ring.open(...)``: the
                     binary form with a context per call;
* keyring text       ``ring.encrypt / ring.decrypt``: ``meshd:vN:<base64>``;
* bare AESGCM+base64 the bare baseline with the same base64 text encoding,
                     to show what base64 itself costs.

Each round starts one path further along this list (round k runs path k
first), so no path always runs right after the same one; ``--fixed-order``
runs them in the order above every round, as before 2026-12-07.
``--baseline-keyring FILE`` adds the three keyring paths of another
keyring.py (``git show REF:plugins/keys/keyring.py``), on the same keyring
file, so an earlier version is measured in the same run.

The keyring paths include everything the API does per record: version
lookup, the count reservation check, the associated data (region, purpose,
key id, version, context) and the version header.

Part 2, propagation (real processes): ``--regions`` ``meshd run`` daemons
(keys plugin only) on one nats-server; each rotation goes through one
region's admin route, and one thread per region polls that region's
``/v1/keys`` until its federation view shows the new version. Reports, per
rotation, the time until the last region saw it.
"""

from __future__ import annotations

import argparse
import binascii
import json
import os
import platform
import statistics
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchlib import cpu_model, load_module
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from meshd_plugins.keys.manager import KeyManager
from meshd_plugins.keys.settings import KeysConfig

RECORD = 4096


def keyring_loops(ring: Any, context: dict[str, str], data: list[bytes], records: int) -> list[Callable[[], None]]:
    """The bound, seal/open and text loops over ``ring`` (this keyring.py's or an earlier one's)."""
    bound = ring.bind(context)
    # Correctness first: the paths really round-trip.
    assert bound.open(bound.seal(data[0])) == data[0]
    assert ring.decrypt(ring.encrypt(data[0], context), context) == data[0]

    def keyring_bound() -> None:
        for i in range(records):
            bound.open(bound.seal(data[i & 255]))

    def keyring_seal() -> None:
        for i in range(records):
            ring.open(ring.seal(data[i & 255], context), context)

    def keyring_text() -> None:
        for i in range(records):
            ring.decrypt(ring.encrypt(data[i & 255], context), context)

    return [keyring_bound, keyring_seal, keyring_text]


def throughput(records: int, rounds: int, baseline: Path | None = None, fixed_order: bool = False) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="keys-bench-"))
    ring = KeyManager(region="eu-west-1", state_dir=tmp, cfg=KeysConfig()).keyring("metering")
    data = [os.urandom(RECORD) for _ in range(256)]
    context = {"tenant": "acme-corp", "field": "usage"}
    aead = AESGCM(AESGCM.generate_key(256))
    aad = b"meshd-aad/1" + b"\x00" * 60  # about the size of the keyring's associated data
    urandom = os.urandom

    def bare() -> None:
        for i in range(records):
            rec = data[i & 255]
            nonce = urandom(12)
            blob = nonce + aead.encrypt(nonce, rec, aad)
            aead.decrypt(blob[:12], blob[12:], aad)

    def bare_text() -> None:
        for i in range(records):
            rec = data[i & 255]
            nonce = urandom(12)
            text = binascii.b2a_base64(nonce + aead.encrypt(nonce, rec, aad), newline=False).decode()
            raw = binascii.a2b_base64(text, strict_mode=True)
            aead.decrypt(raw[:12], raw[12:], aad)

    keyring_bound, keyring_seal, keyring_text = keyring_loops(ring, context, data, records)
    paths: dict[str, Callable[[], None]] = {
        "bare AESGCM": bare, "keyring bound": keyring_bound, "keyring seal/open": keyring_seal,
        "keyring text": keyring_text, "bare AESGCM+base64": bare_text,
    }
    if baseline is not None:
        old = load_module(baseline, "meshd_plugins.keys._baseline_keyring")  # imports this tree's helper modules
        old_ring = old.Keyring(ring._file, ring._provider, old.Policy())  # the same key file and versions
        assert old_ring.decrypt(ring.encrypt(data[0], context), context) == data[0]
        paths.update(zip(("baseline bound", "baseline seal/open", "baseline text"),
                         keyring_loops(old_ring, context, data, records)))
    # Wall time, and this thread's CPU time beside it: on a machine shared with other work the wall clock
    # also counts the time the thread waited for a core, which hits whichever path was running.
    clocks = {"wall": time.perf_counter, "cpu": time.thread_time}
    best = {clock: {name: float("inf") for name in paths} for clock in clocks}
    ratios: dict[str, dict[str, list[float]]] = {clock: {name: [] for name in paths} for clock in clocks}
    names = list(paths)
    for k in range(rounds):
        took: dict[str, dict[str, float]] = {clock: {} for clock in clocks}
        first = 0 if fixed_order else k % len(names)
        for name in names[first:] + names[:first]:
            fn = paths[name]
            start = {clock: read() for clock, read in clocks.items()}
            fn()
            for clock, read in clocks.items():
                took[clock][name] = read() - start[clock]
                best[clock][name] = min(best[clock][name], took[clock][name])
        for clock in clocks:
            for name in paths:
                ratios[clock][name].append(took[clock]["bare AESGCM"] / took[clock][name])
    for clock in clocks:
        base = records / best[clock]["bare AESGCM"]
        print(f"\n4 KiB records, encrypt+decrypt, {records} per round, {rounds} rounds, {clock} time:")
        print(f"{'path':22} {'records/s':>12} {'MiB/s':>8} {'best/best':>10} {'median of rounds':>17}")
        for name, seconds in best[clock].items():
            rate = records / seconds
            print(f"{name:22} {rate:12,.0f} {rate * RECORD / 2**20:8.1f} {rate / base:10.2f} "
                  f"{statistics.median(ratios[clock][name]):17.2f}")
        for text_path in ("keyring text", "baseline text") if baseline else ("keyring text",):
            text_vs_text = best[clock]["bare AESGCM+base64"] / best[clock][text_path]
            text_rounds = statistics.median(t / k for t, k in zip(ratios[clock][text_path],
                                                                 ratios[clock]["bare AESGCM+base64"]))
            print(f"{text_path} vs bare AESGCM+base64 (same encoding), {clock} time: {text_vs_text:.2f} "
                  f"best/best, {text_rounds:.2f} median of rounds")
    print("(records/s: best round; best/best: best round vs bare's best round; median of rounds: the median "
          "over rounds of (bare's time / this path's time) in the same round; cpu: time.thread_time)")
    print(f"order of paths: {'the same every round' if fixed_order else 'each round starts one path further'}"
          + (f"; baseline keyring: {baseline}" if baseline else ""))
    print(f"encryptions counted (reserved, at most): {ring.metadata()['encryptions_reserved']:,}")


def propagation(regions_n: int, rotations: int) -> None:
    import yaml

    from meshd.testing import BUILTIN_PLUGINS, LocalFederation, default_regions_file

    source = default_regions_file()
    assert source is not None
    regions = list(yaml.safe_load(source.read_text())["regions"])[:regions_n]
    others = [p for p in BUILTIN_PLUGINS if p != "keys"]
    work = Path(tempfile.mkdtemp(prefix="keys-bench-fed-"))
    fed = LocalFederation(work, regions=regions, config={"plugins": {"disabled": others},
                                                         "keys": {"announce_interval": "30s"}})
    times: list[float] = []
    with fed:
        def version_seen(observer: str, region: str) -> int:
            with urllib.request.urlopen(f"http://127.0.0.1:{fed.http_ports[observer]}/v1/keys", timeout=5) as r:
                doc = json.loads(r.read())
            rings = doc["federation"].get(region, {}).get("keyrings", [])
            return max((ring["version"] for ring in rings if ring["purpose"] == "secrets"), default=0)

        fed.wait_for(lambda: all(version_seen(o, r) >= 1 for o in regions for r in regions), 60,
                     what="every region sees every region")
        for i in range(rotations):
            target = regions[i % len(regions)]
            expected = version_seen(target, target) + 1
            seen: dict[str, float] = {}
            go = threading.Event()

            def poll(observer: str) -> None:
                go.wait()
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    if version_seen(observer, target) >= expected:
                        seen[observer] = time.monotonic()
                        return
                    time.sleep(0.005)

            threads = [threading.Thread(target=poll, args=(o,)) for o in regions]
            for th in threads:
                th.start()
            start = time.monotonic()
            go.set()
            code, body = fed.http(target, "/v1/keys/rotate", method="POST", body={"purposes": ["secrets"]},
                                  admin=True, timeout=10)
            assert code == 200, body
            for th in threads:
                th.join()
            if len(seen) != len(regions):
                raise SystemExit(f"rotation {i}: only {sorted(seen)} saw {target} v{expected} within 30 s")
            last = max(seen.values()) - start
            times.append(last)
            print(f"rotation {i + 1}: {target} -> v{expected}, visible in all {len(regions)} regions after "
                  f"{last * 1000:.0f} ms")
    print(f"\nrotation visible in all {len(regions)} regions' federation status: "
          f"min {min(times) * 1000:.0f} ms, median {statistics.median(times) * 1000:.0f} ms, "
          f"max {max(times) * 1000:.0f} ms over {len(times)} rotations (target: < 2000 ms)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--rotations", type=int, default=10)
    ap.add_argument("--regions", type=int, default=7)
    ap.add_argument("--skip-federation", action="store_true")
    ap.add_argument("--baseline-keyring", type=Path, default=None, metavar="FILE",
                    help="also run the keyring paths with this keyring.py (an earlier version), same run")
    ap.add_argument("--fixed-order", action="store_true", help="run the paths in the same order every round")
    args = ap.parse_args()
    print(f"{time.strftime('%Y-%m-%d %H:%M')}  nproc {os.cpu_count()}  {cpu_model()}  "
          f"Python {platform.python_version()}")
    throughput(args.records, args.rounds, args.baseline_keyring, args.fixed_order)
    if not args.skip_federation:
        propagation(args.regions, args.rotations)


if __name__ == "__main__":
    main()
