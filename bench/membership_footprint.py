"""Idle footprint of a 7-daemon federation: RSS and CPU per `meshd run` process.

The federation converges, settles, then each daemon's CPU time is sampled
over ``--window`` seconds (psutil, user + system) and its RSS at the end.
Run it with all builtin plugins (what ships), with the membership plugin
alone, and with none (the core's own cost), so membership's share shows:

    python bench/membership_footprint.py
    python bench/membership_footprint.py --plugins membership
    python bench/membership_footprint.py --plugins none

RSS counts shared pages (libpython, OpenSSL...) in full for every process;
PSS splits them between the processes sharing them, USS is what the
process alone holds. The same three figures are printed for a bare
``python -c 'import nats, cryptography, pydantic'`` process (the libraries
every daemon needs, nothing of meshd), measured beside the federation.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from membership_common import machine, table

from meshd.testing import BUILTIN_PLUGINS, LocalFederation

REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ca-central-1", "me-south-1", "ap-southeast-1"]


BARE = ("import nats, cryptography, pydantic, sys\n"
        "from cryptography.hazmat.primitives.ciphers.aead import AESGCM\n"
        "print('ready', flush=True)\nsys.stdin.read()\n")


def bare_imports() -> list[float]:
    """RSS, PSS, USS (MiB) of a process that imported what every daemon needs and nothing else."""
    proc = subprocess.Popen([sys.executable, "-c", BARE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        mem = psutil.Process(proc.pid).memory_full_info()
        return [mem.rss / 2**20, mem.pss / 2**20, mem.uss / 2**20]
    finally:
        proc.communicate("")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=float, default=60.0, help="seconds of CPU sampling")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds after convergence before sampling")
    parser.add_argument("--plugins", choices=["all", "membership", "none"], default="all",
                        help="builtin plugins enabled (default: all)")
    args = parser.parse_args()
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; {machine()}", flush=True)
    disabled = {"all": [], "membership": [p for p in BUILTIN_PLUGINS if p != "membership"],
                "none": list(BUILTIN_PLUGINS)}[args.plugins]
    config = {"plugins": {"disabled": disabled}}
    with tempfile.TemporaryDirectory(prefix="bench-footprint-") as tmp:
        fed = LocalFederation(Path(tmp), regions=REGIONS, config=config)
        try:
            fed.start()
            if args.plugins != "none":
                fed.wait_for(lambda: all(fed.member_state(o, r) == "alive" for o in REGIONS for r in REGIONS
                                         if r != o), 60, what="convergence")
            plugins = fed.status(REGIONS[0])["plugins"]
            time.sleep(args.settle)  # let start-up work (imports, joins, first probes) finish
            procs = {r: psutil.Process(fed.procs[r].pid) for r in REGIONS}
            before = {r: sum(p.cpu_times()[:2]) for r, p in procs.items()}
            t0 = time.monotonic()
            time.sleep(args.window)
            wall = time.monotonic() - t0
            rows = []
            for r, p in procs.items():
                cpu = (sum(p.cpu_times()[:2]) - before[r]) / wall * 100
                mem = p.memory_full_info()
                rows.append([r, mem.rss / 2**20, mem.pss / 2**20, mem.uss / 2**20, cpu])
            msgs = [fed.metric(r, "meshd_membership_messages_total", direction="out", type="ping") for r in REGIONS]
            bare = bare_imports()
        finally:
            fed.stop()
    print(f"# after: {machine()}; plugins: {', '.join(plugins) or 'none'}\n")
    columns = list(zip(*[row[1:] for row in rows]))
    rows.append(["mean", *(statistics.fmean(c) for c in columns)])
    rows.append(["max", *(max(c) for c in columns)])
    rows.append(["bare imports", *bare, "-"])
    print(table(["daemon", "RSS MiB", "PSS MiB", "USS MiB", "CPU % of one core"], rows))
    print(f"\npings sent per daemon since start: {min(msgs):.0f}-{max(msgs):.0f}")


if __name__ == "__main__":
    main()
