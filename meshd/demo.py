"""``meshd demo``: a whole federation on this machine, with its own nats-server.

It runs ``meshd init`` into a temporary directory, starts nats-server with
the generated config and one ``meshd run`` process per region, and shows each
daemon's view of every region as a live table. With ``--kill REGION`` it
SIGKILLs that region's daemon once all views agree everyone is alive, so the
viewer sees the others mark it dead. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .config import ConfigError, RegionMap, load_model_file
from .natsserver import NatsServerNotFound
from .testing import LocalFederation, default_regions_file


def _views(fed: LocalFederation) -> dict[str, dict[str, Any] | None]:
    return {region: (fed.status(region) if fed.running(region) else None) for region in fed.regions}


def member_states(view: dict[str, Any] | None) -> dict[str, str]:
    if not view:
        return {}
    return {m["region"]: m["state"] for m in view.get("members", [])}


def converged(views: dict[str, dict[str, Any] | None], regions: list[str], expect: dict[str, str]) -> bool:
    """Every running daemon sees every region in the expected state."""
    live = [r for r, v in views.items() if v is not None and expect.get(r, "alive") == "alive"]
    if not live:
        return False
    return all(member_states(views[r]).get(other) == expect.get(other, "alive")
               for r in live for other in regions if other != r)


def render(views: dict[str, dict[str, Any] | None], regions: list[str], t: Any, events: list[str]) -> str:
    label = t("cli.demo.matrix")
    width = max(len(label), *(len(r) for r in regions)) + 2
    col = max(len(r) for r in regions) + 2
    head = label.ljust(width) + "".join(r.ljust(col) for r in regions)
    lines = [head, "-" * len(head)]
    for region in regions:
        row = region.ljust(width)
        for observer in regions:
            view = views.get(observer)
            if view is None:
                cell = t("cli.demo.down")
            elif observer == region:
                cell = t("cli.demo.self")
            else:
                state = member_states(view).get(region)
                cell = t(f"cli.member_state.{state}") if state else "?"
            row += cell[: col - 2].ljust(col)
        lines.append(row)
    lines.append("")
    lines.extend(events[-8:])
    return "\n".join(lines)


def _raise_interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _set_signal(signum: int, handler: Any) -> Any:
    """Install a handler; None when not on the main thread (then signals are not ours to take)."""
    try:
        return signal.signal(signum, handler)
    except ValueError:
        return None


def run_demo(args: argparse.Namespace, ctx: Any) -> int:
    """Run the demo until done (``--once``), timed out, or interrupted; everything started is stopped."""
    t = ctx.t
    regions_file = Path(args.regions) if args.regions else default_regions_file()
    if regions_file is None:
        ctx.error(t("cli.demo.no_regions"))
        return 2
    try:
        regions = list(load_model_file(regions_file, RegionMap).regions)
    except ConfigError as exc:
        for issue in exc.issues:
            ctx.error(ctx.describe_issue(issue))
        return 2
    if args.kill and args.kill not in regions:
        ctx.error(t("cli.demo.unknown_region", region=args.kill, known=", ".join(regions)))
        return 2
    own_dir = args.dir is None
    workdir = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="meshd-demo-"))
    try:
        shared = [regions_file.parent / name for name in ctx.hooks.federation_files()
                  if (regions_file.parent / name).is_file()]
        fed = LocalFederation(workdir, regions_file=regions_file, federation="demo", shared_files=shared,
                              lang=t.lang)
    except NatsServerNotFound as exc:
        ctx.error(str(exc))
        return 1
    tty = sys.stdout.isatty()
    events: list[str] = []
    started = time.monotonic()

    def event(text: str) -> None:
        line = f"[{time.monotonic() - started:6.1f}s] {text}"
        events.append(line)
        if not tty:
            ctx.print(line)

    code = 0
    # SIGTERM stops the demo like Ctrl-C does, so a killed demo leaves no daemon behind.
    previous_term = _set_signal(signal.SIGTERM, _raise_interrupt)
    try:
        fed.start(wait=False)
        event(t("cli.demo.started", count=len(regions), dir=workdir, nats=fed.servers[0].url))
        expect = {r: "alive" for r in regions}
        phase = "converging"
        killed_at = 0.0
        while True:
            views = _views(fed)
            if tty:
                sys.stdout.write("\x1b[H\x1b[2J" + render(views, regions, t, events) + "\n")
                sys.stdout.flush()
            if phase == "converging" and converged(views, regions, expect):
                event(t("cli.demo.converged"))
                if args.kill:
                    fed.kill(args.kill)
                    killed_at = time.monotonic()
                    expect[args.kill] = "dead"
                    event(t("cli.demo.killed", region=args.kill))
                    phase = "detecting"
                else:
                    phase = "done"
            elif phase == "detecting" and converged(views, regions, expect):
                event(t("cli.demo.detected", region=args.kill, seconds=t.number(time.monotonic() - killed_at, 1)))
                phase = "done"
            if phase == "done" and args.once:
                break
            if args.timeout and time.monotonic() - started > args.timeout:
                event(t("cli.demo.timeout", seconds=args.timeout))
                code = 1
                break
            time.sleep(0.1 if phase == "detecting" else 0.25)
        if not tty:
            ctx.print(render(_views(fed), regions, t, []))
    except KeyboardInterrupt:
        event(t("cli.demo.stopping"))
    finally:
        # A second Ctrl-C must not cut the cleanup short.
        previous_int = _set_signal(signal.SIGINT, signal.SIG_IGN)
        _set_signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            fed.stop()
        finally:
            if previous_int is not None:
                _set_signal(signal.SIGINT, previous_int)
            if previous_term is not None:
                _set_signal(signal.SIGTERM, previous_term)
        if own_dir and code == 0:
            shutil.rmtree(workdir, ignore_errors=True)
        elif code:
            ctx.error(t("cli.demo.logs", dir=fed.logs))
    return code
