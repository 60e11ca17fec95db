"""The keyring's text and binary paths against bare AES-GCM, each step timed alone in one process.

    python bench/keys_steps.py [--rounds 5] [--number 2000]

keys_bench.py times whole loops over 256 records; this times one 4 KiB record
per call with ``timeit``, in the thread's CPU time (what other work on the
machine does not add to), encryption and decryption apart, best of
``--rounds`` alternated rounds: where a ratio of keys_bench.py is lost.
"""

from __future__ import annotations

import argparse
import binascii
import os
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from meshd_plugins.keys.manager import KeyManager
from meshd_plugins.keys.settings import KeysConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--number", type=int, default=2000, help="calls per timing")
    args = ap.parse_args()
    ring = KeyManager(region="eu-west-1", state_dir=Path(tempfile.mkdtemp(prefix="keys-steps-")),
                      cfg=KeysConfig()).keyring("metering")
    record, context = os.urandom(4096), {"tenant": "acme-corp", "field": "usage"}
    aead = AESGCM(AESGCM.generate_key(256))
    aad = b"meshd-aad/1" + b"\x00" * 60  # about the size of the keyring's associated data
    urandom, b2a, a2b = os.urandom, binascii.b2a_base64, binascii.a2b_base64
    text = ring.encrypt(record, context)
    nonce = urandom(12)
    bare_text = b2a(nonce + aead.encrypt(nonce, record, aad), newline=False).decode()

    def bare_encrypt() -> None:
        n = urandom(12)
        b2a(n + aead.encrypt(n, record, aad), newline=False).decode()

    def bare_decrypt() -> None:
        raw = a2b(bare_text, strict_mode=True)
        aead.decrypt(raw[:12], raw[12:], aad)

    def bare_binary() -> None:
        n = urandom(12)
        blob = n + aead.encrypt(n, record, aad)
        aead.decrypt(blob[:12], blob[12:], aad)

    steps: dict[str, Callable[[], object]] = {
        "bare AESGCM (binary)": bare_binary,
        "keyring seal/open": lambda: ring.open(ring.seal(record, context), context),
        "bare encrypt + base64": bare_encrypt,
        "keyring encrypt": lambda: ring.encrypt(record, context),
        "bare base64 + decrypt": bare_decrypt,
        "keyring decrypt": lambda: ring.decrypt(text, context),
    }
    best = {name: float("inf") for name in steps}
    for _ in range(args.rounds):
        for name, fn in steps.items():
            took = min(timeit.repeat(fn, number=args.number, repeat=3, timer=time.thread_time))
            best[name] = min(best[name], took / args.number * 1e6)
    for name, us in best.items():
        print(f"{name:24} {us:8.2f} us (CPU)")
    enc = best["bare encrypt + base64"] / best["keyring encrypt"]
    dec = best["bare base64 + decrypt"] / best["keyring decrypt"]
    text_ratio = (best["bare encrypt + base64"] + best["bare base64 + decrypt"]) / (
        best["keyring encrypt"] + best["keyring decrypt"])
    print(f"seal/open vs bare: {best['bare AESGCM (binary)'] / best['keyring seal/open']:.3f}; text vs bare + base64: "
          f"{text_ratio:.3f} (encrypt {enc:.3f}, decrypt {dec:.3f})")


if __name__ == "__main__":
    main()
