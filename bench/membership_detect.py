"""Failure detection and graceful leave, meshd against HashiCorp Serf, in one run.

For each of ``--kills`` rounds: wait until every daemon sees every region
alive, SIGKILL one daemon (a different region each round), and time until
every survivor has marked it dead (from the survivors' own log lines, ms
resolution); then restart it. Graceful leaves (SIGTERM) are timed the same
way until every survivor says ``left``. Then the same with 7 Serf agents
(default LAN profile): SIGKILL -> every survivor ran its member-failed
handler; ``serf leave`` -> member-leave.

    python bench/membership_detect.py                      # 10 kills, 3 leaves, both systems
    python bench/membership_detect.py --kills 3 --skip-serf
"""

from __future__ import annotations

import argparse
import json
import signal
import tempfile
import time
from pathlib import Path

from membership_common import SerfCluster, machine, summary, table, transitions

from meshd.testing import BUILTIN_PLUGINS, LocalFederation

REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ca-central-1", "me-south-1", "ap-southeast-1"]


def _converged(fed: LocalFederation) -> bool:
    views = {r: fed.members(r) for r in fed.regions if fed.running(r)}
    return all(views[o].get(r, {}).get("state") == "alive" for o in views for r in views if r != o)


def _all_see(fed: LocalFederation, region: str, state: str) -> bool:
    return all(fed.member_state(o, region) == state for o in fed.regions if o != region and fed.running(o))


def meshd_rounds(workdir: Path, kills: int, leaves: int, only_membership: bool, settle: float) -> dict:
    config = {"plugins": {"disabled": [p for p in BUILTIN_PLUGINS if p != "membership"]}} if only_membership else {}
    fed = LocalFederation(workdir, regions=REGIONS, config=config)
    detect, first, left = [], [], []
    try:
        fed.start()
        for k in range(kills):
            victim = REGIONS[k % len(REGIONS)]
            fed.wait_for(lambda: _converged(fed), 60, what="convergence")
            time.sleep(settle)
            t0 = time.time()
            fed.kill(victim)
            fed.wait_for(lambda: _all_see(fed, victim, "dead"), 60, interval=0.02, what=f"{victim} dead")
            marks = {}
            for t in transitions(fed.logs):
                if t.region == victim and t.state == "dead" and t.ts >= t0 - 0.001 and t.observer != victim:
                    marks.setdefault(t.observer, t.ts)
            detect.append(max(marks.values()) - t0)
            first.append(min(marks.values()) - t0)
            print(f"meshd kill {k + 1}/{kills} {victim}: first {first[-1]:.3f}s, all {detect[-1]:.3f}s", flush=True)
            fed.start_daemon(victim)
        for j in range(leaves):
            victim = REGIONS[(j + 2) % len(REGIONS)]
            fed.wait_for(lambda: _converged(fed), 60, what="convergence")
            time.sleep(settle)
            t0 = time.time()
            fed.signal(victim, signal.SIGTERM)
            fed.wait_for(lambda: _all_see(fed, victim, "left"), 30, interval=0.02, what=f"{victim} left")
            marks = {}
            for t in transitions(fed.logs):
                if t.region == victim and t.state == "left" and t.ts >= t0 - 0.001 and t.observer != victim:
                    marks.setdefault(t.observer, t.ts)
            left.append(max(marks.values()) - t0)
            print(f"meshd leave {j + 1}/{leaves} {victim}: all {left[-1]:.3f}s", flush=True)
            fed.procs[victim].wait(10)
            fed.start_daemon(victim)
        deaths_wrong = [t for t in transitions(fed.logs) if t.state == "dead" and t.previous != "unknown"]
    finally:
        fed.stop()
    return {"detect_all": detect, "detect_first": first, "leave_all": left, "dead_transitions": len(deaths_wrong)}


def serf_rounds(workdir: Path, kills: int, leaves: int, settle: float) -> dict:
    cluster = SerfCluster(workdir, n=len(REGIONS))
    detect, first, left = [], [], []
    try:
        cluster.start()
        for k in range(kills):
            victim = k % cluster.n
            cluster.wait_converged()
            time.sleep(settle)
            t0 = cluster.kill(victim)
            marks = cluster.wait_events("member-failed", victim, t0)
            detect.append(max(marks) - t0)
            first.append(min(marks) - t0)
            print(f"serf kill {k + 1}/{kills} n{victim}: first {first[-1]:.3f}s, all {detect[-1]:.3f}s", flush=True)
            cluster.start_agent(victim, join=(victim + 1) % cluster.n)
        for j in range(leaves):
            victim = (j + 2) % cluster.n
            cluster.wait_converged()
            time.sleep(settle)
            t0 = cluster.leave(victim)
            marks = cluster.wait_events("member-leave", victim, t0, timeout=30)
            left.append(max(marks) - t0)
            print(f"serf leave {j + 1}/{leaves} n{victim}: all {left[-1]:.3f}s", flush=True)
            cluster.start_agent(victim, join=(victim + 1) % cluster.n)
    finally:
        cluster.stop()
    return {"detect_all": detect, "detect_first": first, "leave_all": left}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--leaves", type=int, default=3)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds to wait after convergence, before a kill")
    parser.add_argument("--only-membership", action="store_true", help="disable the other builtin plugins")
    parser.add_argument("--skip-serf", action="store_true")
    parser.add_argument("--json", help="also write the raw numbers to this file")
    args = parser.parse_args()

    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; {machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-membership-") as tmp:
        results = {"meshd": meshd_rounds(Path(tmp) / "meshd", args.kills, args.leaves, args.only_membership,
                                         args.settle)}
        if not args.skip_serf:
            results["serf"] = serf_rounds(Path(tmp) / "serf", args.kills, args.leaves, args.settle)
    print(f"# after: {machine()}")

    rows = []
    for system, r in results.items():
        d, f, lv = summary(r["detect_all"]), summary(r["detect_first"]), summary(r["leave_all"])
        rows.append([system, d["n"], f.get("median", "-"), d.get("median", "-"), d.get("max", "-"),
                     lv.get("median", "-"), lv.get("max", "-")])
    if "serf" in results:
        m, s = results["meshd"], results["serf"]
        ratio = lambda key, stat: summary(m[key])[stat] / summary(s[key])[stat]  # noqa: E731
        rows.append(["meshd/serf", "", ratio("detect_first", "median"), ratio("detect_all", "median"),
                     ratio("detect_all", "max"), ratio("leave_all", "median"), ratio("leave_all", "max")])
    print()
    print(table(["system", "kills", "first dead, median s", "all dead, median s", "all dead, worst s",
                 "all left, median s", "all left, worst s"], rows))
    print(f"\nmeshd dead transitions in the run (every one should be a kill): {results['meshd']['dead_transitions']}"
          f" for {args.kills} kills x {len(REGIONS) - 1} survivors")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
