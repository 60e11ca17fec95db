#!/usr/bin/env python3
"""Run many seeded chaos schedules; report violations and the SIGKILL -> decision latencies.

    python bench/chaos.py --runs 20 --seed 1 [--duration 40] [--budget 20] [--keep] [--json out.json]
    python bench/chaos.py --runs 1 --profile wan [--latency 80-150ms] [--verbose]

Each run starts a fresh 7-region federation (3-node NATS cluster, R3
bucket, a TCP proxy per daemon), applies the schedule of seed S+i and
checks the invariants (see chaos_runner.py). The first fault
of every schedule is a SIGKILL from a clean start: its latency to the
committed decision and to the last survivor applying it is the sample.
``--profile wan`` simulates regions on several continents: every proxy
holds each chunk 80-150 ms each way (``--latency`` sets another range),
the daemons run the ``wan`` membership timing, and the liveness budget is
60 s. Exit 1 if any run broke an invariant, 2 on a bad option.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchlib import cpu_model
from chaos_runner import PROFILES, parse_latency, run_schedule


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (no interpolation: with 20 samples, p95 is the 19th)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def latency_arg(text: str) -> tuple[float, float]:
    try:
        return parse_latency(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=40.0, help="seconds of faults per schedule")
    parser.add_argument("--budget", type=float, default=None,
                        help="detection + decision budget for liveness (s); default: the profile's")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="lan",
                        help="network: lan (no added latency) or wan (80-150 ms per proxy crossing, wan timing)")
    parser.add_argument("--latency", type=latency_arg, metavar="RANGE",
                        help="latency each proxy adds each way, e.g. 80-150ms (default: the profile's)")
    parser.add_argument("--verbose", action="store_true", help="print every fault and step as it happens")
    parser.add_argument("--keep", action="store_true", help="keep every run's directory (failed ones are kept)")
    parser.add_argument("--json", help="write every run's summary here")
    args = parser.parse_args()

    import os

    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')}  nproc={os.cpu_count()}  cpu={cpu_model()}  "
          f"loadavg={os.getloadavg()[0]:.2f}")
    print(f"# python bench/chaos.py {' '.join(sys.argv[1:])}")
    profile = PROFILES[args.profile]
    latency = args.latency or profile.latency
    print(f"# profile {profile.name}: latency per proxy crossing "
          f"{'none' if not latency else f'{latency[0] * 1000:g}-{latency[1] * 1000:g} ms'}, membership timing "
          f"{profile.membership}, liveness budget {args.budget or profile.detect_budget:g} s", flush=True)
    began = time.monotonic()

    def log(message: str) -> None:
        if args.verbose:
            print(f"  [{time.monotonic() - began:7.1f}s] {message}", flush=True)

    summaries = []
    committed, applied = [], []
    failed = 0
    for i in range(args.runs):
        seed = args.seed + i
        workdir = Path(tempfile.mkdtemp(prefix=f"meshd-chaos-{seed}-"))
        report = run_schedule(workdir / "fed", seed, duration=args.duration, detect_budget=args.budget,
                              profile=args.profile, latency=args.latency, log=log)
        summary = report.summary()
        summaries.append(summary)
        for sample in report.samples:
            if sample.committed is not None:
                committed.append(sample.committed)
            if sample.applied_everywhere is not None:
                applied.append(sample.applied_everywhere)
        sample = report.samples[0] if report.samples else None
        print(f"seed {seed}: {'ok' if report.ok else 'FAILED'} in {report.seconds:.0f}s, "
              f"{summary['decisions']} decisions, {summary['abandoned']} abandoned terms, {report.votes} votes, "
              f"{report.liveness_checked} liveness checks, {report.probes} route probes; kill->commit "
              f"{'-' if not sample or sample.committed is None else f'{sample.committed:.2f}s'}, "
              f"->applied everywhere "
              f"{'-' if not sample or sample.applied_everywhere is None else f'{sample.applied_everywhere:.2f}s'}",
              flush=True)
        if not report.ok:
            failed += 1
            for v in report.violations:
                print(f"    violation: {v}")
            print(f"    kept {workdir}")
        elif not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(f"runs: {args.runs} (seeds {args.seed}..{args.seed + args.runs - 1}), passed: {args.runs - failed}, "
          f"failed: {failed}")
    for name, values in (("kill -> committed", committed), ("kill -> applied at every survivor", applied)):
        if values:
            print(f"{name}: n={len(values)} p50={statistics.median(values):.2f}s "
                  f"p95={percentile(values, 95):.2f}s max={max(values):.2f}s")
    if args.json:
        Path(args.json).write_text(json.dumps(summaries, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
