"""Cost of the signed envelope: seal + open per message vs bare Ed25519 sign + verify and JSON.

    python bench/envelope_bench.py [--n 20000]

Prints messages/s for each and the ratio meshd/bare: how much the envelope
(field checks, replay window, clock check) adds on top of the cryptography
itself, which dominates.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

from meshd.config import TrustBundle, TrustEntry
from meshd.envelope import Opener, Sealer
from meshd.identity import Signer, TrustStore, generate_key, key_id, public_key_b64


def rate(n: int, fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn(n)
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    args = ap.parse_args()
    key = generate_key()
    trust = TrustStore(TrustBundle(federation="b", keys={"r1": TrustEntry(
        key_id=key_id(key.public_key()), public_key=public_key_b64(key.public_key()))}))
    body = {"probe": 12345, "piggyback": [{"region": f"r{i}", "state": "alive", "inc": i} for i in range(4)]}
    sealer = Sealer("b", "r1", Signer(key), 1)
    opener = Opener("b", trust, replay_window=1 << 20)

    def envelope(n: int) -> None:
        for _ in range(n):
            data, headers = sealer.seal("probe", body)
            opener.open(data, headers, subject_sender="r1")

    pub = key.public_key()

    def bare(n: int) -> None:
        for _ in range(n):
            data = json.dumps(body, separators=(",", ":")).encode()
            pub.verify(key.sign(data), data)
            json.loads(data)

    envelope(200)
    bare(200)
    r_env, r_bare = rate(args.n, envelope), rate(args.n, bare)
    size = len(sealer.seal("probe", body)[0])
    print(f"{time.strftime('%Y-%m-%d')} {platform.processor() or platform.machine()} n={args.n}")
    print(f"{'path':<40}{'msgs/s':>12}")
    print(f"{'meshd seal + open (sign + verify)':<40}{r_env:>12,.0f}")
    print(f"{'bare json + Ed25519 sign + verify':<40}{r_bare:>12,.0f}")
    print(f"ratio meshd/bare: {r_env / r_bare:.2f}   envelope size: {size} bytes")


if __name__ == "__main__":
    main()
