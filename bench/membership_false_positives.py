"""False positives under CPU starvation: meshd (default profile) and Serf under the same hog.

Seven daemons converge, then one busy-loop process per core runs for
``--duration`` seconds at the daemons' own priority, so both cores are
saturated. Nobody is killed: every transition to ``dead`` is a false
positive. Then the same with seven Serf agents (member-failed events).

    python bench/membership_false_positives.py                  # 5 minutes each
    python bench/membership_false_positives.py --duration 60    # a short run
    python bench/membership_false_positives.py --duration 60 --pause 0.5 --skip-serf

``--pause S`` adds Lifeguard's "slow member": every 2-4 s one random daemon
is frozen (SIGSTOP) for S seconds, then resumed. A freeze shorter than the
suspicion floor must end in a refutation, never a death.
"""

from __future__ import annotations

import argparse
import random
import signal
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from membership_common import SerfCluster, cpu_hog, machine, table, transitions

from meshd.testing import BUILTIN_PLUGINS, LocalFederation

REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ca-central-1", "me-south-1", "ap-southeast-1"]


def _freezer(fed: LocalFederation, pause: float, stop: threading.Event, frozen: list[str]) -> None:
    rng = random.Random(7)
    while not stop.wait(rng.uniform(2.0, 4.0)):
        region = rng.choice(REGIONS)
        fed.procs[region].send_signal(signal.SIGSTOP)
        frozen.append(region)
        time.sleep(pause)
        fed.procs[region].send_signal(signal.SIGCONT)


def meshd_run(workdir: Path, duration: float, only_membership: bool, hogs: int | None,
              pause: float = 0.0) -> dict:
    config = {"plugins": {"disabled": [p for p in BUILTIN_PLUGINS if p != "membership"]}} if only_membership else {}
    fed = LocalFederation(workdir, regions=REGIONS, config=config)
    try:
        fed.start()
        fed.wait_for(lambda: all(fed.member_state(o, r) == "alive" for o in REGIONS for r in REGIONS if r != o),
                     60, what="convergence")
        t0 = time.time()
        awareness_max = 0.0
        stop, frozen = threading.Event(), []
        freezer = threading.Thread(target=_freezer, args=(fed, pause, stop, frozen), daemon=True)
        if pause:
            freezer.start()
        with cpu_hog(hogs):
            end = time.monotonic() + duration
            while time.monotonic() < end:
                time.sleep(min(5.0, max(0.0, end - time.monotonic())))
                for r in REGIONS:
                    try:
                        awareness_max = max(awareness_max, fed.metric(r, "meshd_membership_awareness"))
                    except OSError:
                        pass
        stop.set()
        if pause:
            freezer.join()
        counts: Counter[str] = Counter()
        for t in transitions(fed.logs):
            if t.ts >= t0:
                counts[t.state] += 1
        stats = {name: sum(fed.metric(r, f"meshd_membership_{name}_total") for r in REGIONS)
                 for name in ("refutations", "loop_stalls")}
        return {"dead": counts["dead"], "suspect": counts["suspect"], "isolated": counts["isolated"],
                "freezes": len(frozen),
                "refutations": stats["refutations"], "stalls": stats["loop_stalls"], "awareness_max": awareness_max}
    finally:
        fed.stop()


def serf_run(workdir: Path, duration: float, hogs: int | None) -> dict:
    cluster = SerfCluster(workdir, n=len(REGIONS))
    try:
        cluster.start()
        before = cluster.count("member-failed")
        with cpu_hog(hogs):
            time.sleep(duration)  # nothing to wait for: we count what happens in this window
        time.sleep(1)
        return {"dead": cluster.count("member-failed") - before}
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of CPU hog per system")
    parser.add_argument("--only-membership", action="store_true", help="disable the other builtin plugins")
    parser.add_argument("--hogs", type=int, default=None, help="busy-loop processes (default: one per core)")
    parser.add_argument("--pause", type=float, default=0.0, help="freeze a random daemon this long every 2-4 s")
    parser.add_argument("--skip-serf", action="store_true")
    args = parser.parse_args()
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; {machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-fp-") as tmp:
        m = meshd_run(Path(tmp) / "meshd", args.duration, args.only_membership, args.hogs, args.pause)
        print(f"meshd: {m}", flush=True)
        s = serf_run(Path(tmp) / "serf", args.duration, args.hogs) if not args.skip_serf else None
        if s:
            print(f"serf: {s}", flush=True)
    print(f"# after: {machine()}; hog: {args.hogs or 'one'} busy loop(s){'' if args.hogs else ' per core'}"
          + (f"; {m['freezes']} freezes of {args.pause:g}s" if args.pause else "") + "\n")
    rows = [["meshd", args.duration, m["dead"], m["suspect"], m["refutations"], m["isolated"], m["stalls"],
             m["awareness_max"]]]
    if s:
        rows.append(["serf", args.duration, s["dead"], "-", "-", "-", "-", "-"])
    print(table(["system", "hog s", "false dead", "suspect", "refutations", "isolated", "loop stalls",
                 "max awareness"], rows))


if __name__ == "__main__":
    main()
