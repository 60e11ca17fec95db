"""``meshd demo``: a whole federation on this machine, with its own nats-server.

It runs ``meshd init`` into a temporary directory, starts nats-server with
the generated config and one ``meshd run`` process per region, and shows each
daemon's view of every region as a live table. With ``--kill REGION`` it
SIGKILLs that region's daemon once all views agree everyone is alive, so the
viewer sees the others mark it dead, then the failover the survivors commit
and where a tenant of that jurisdiction is routed before and after, all read
from the daemons' own ``/status`` and ``/v1/route``. Without a terminal it
prints event lines and the table once at the end. Ctrl-C stops everything it
started.
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
from urllib.parse import urlencode

import yaml

from .config import ConfigError, RegionMap, load_model_file
from .i18n import Translator
from .natsserver import NatsServerNotFound
from .tenants import TenantFile
from .testing import LocalFederation, default_regions_file

EVENTS_SHOWN = 10
"""Event lines under the live table."""

NOT_IN_DEMO = ("region_pipeline.yaml",)
"""Federation files the demo leaves behind: rollouts need load balancers the demo has none of, and the
sample pipeline names the sample map's regions, so with a smaller map every daemon would refuse to start."""


def demo_shared_files(directory: Path, names: list[str]) -> list[Path]:
    """The federation files beside the demo's region map that the demo copies."""
    return [directory / name for name in names if name not in NOT_IN_DEMO and (directory / name).is_file()]


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
    lines.extend(events[-EVENTS_SHOWN:])
    return "\n".join(lines)


# ---------------------------------------------------------------- what the federation does after a kill


def demo_tenants(source: Path, region_map: RegionMap) -> TenantFile | None:
    """The tenants of ``source`` that the demo's regions can serve; None when there are none.

    The daemons reject a tenant directory naming a jurisdiction or home
    region their map lacks, and the demo may run on part of the map.
    """
    if not source.is_file():
        return None
    directory = load_model_file(source, TenantFile)
    jurisdictions = {r.jurisdiction for r in region_map.regions.values()}
    kept = {name: tenant for name, tenant in directory.tenants.items()
            if tenant.residency in jurisdictions and (tenant.home is None or tenant.home in region_map.regions)}
    return TenantFile(tenants=kept) if kept else None


def write_tenants(tenants: TenantFile, path: Path) -> Path:
    data = {"tenants": {name: t.model_dump(exclude_defaults=True) for name, t in tenants.tenants.items()}}
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def pick_tenant(tenants: TenantFile | None, region_map: RegionMap, killed: str) -> str | None:
    """A tenant whose traffic the kill can move: of the killed region's jurisdiction, homed there if any.

    Then one without a home region (routed to the nearest region, which the
    kill may change), then any of that jurisdiction.
    """
    if tenants is None:
        return None
    jurisdiction = region_map.regions[killed].jurisdiction
    local = [(name, t) for name, t in tenants.tenants.items() if t.residency == jurisdiction]
    for wanted in (lambda t: t.home == killed, lambda t: t.home is None, lambda t: True):
        for name, tenant in local:
            if wanted(tenant):
                return name
    return None


def committed_failover(view: dict[str, Any] | None, region: str, since: float) -> dict[str, Any] | None:
    """The failover of ``region`` committed at or after ``since`` (wall clock) in this daemon's status."""
    for decision in reversed((view or {}).get("decisions") or []):
        if (decision.get("region") == region and decision.get("action") == "failover"
                and (decision.get("committed_at") or 0) >= since):
            return dict(decision)
    return None


def failover_expected(view: dict[str, Any] | None, survivors: int) -> tuple[bool, dict[str, Any]]:
    """Whether the survivors can commit a failover, and the failover status it was judged on.

    Not without the failover plugin, with voting disabled, or with fewer
    survivors than the quorum.
    """
    status = (view or {}).get("failover")
    if not isinstance(status, dict) or status.get("enabled") is False:
        return False, {}
    return survivors >= int(status.get("quorum") or 0), status


def describe_failover(t: Translator, decision: dict[str, Any], killed_at: float) -> str:
    seconds = t.number(max(0.0, (decision.get("committed_at") or killed_at) - killed_at), 1)
    params = dict(region=decision.get("region"), term=decision.get("term"), seconds=seconds,
                  voters=", ".join(decision.get("voters") or []))
    if decision.get("target"):
        return t("cli.demo.failover", target=decision["target"], **params)
    return t("cli.demo.failover_no_target", **params)


def describe_route(t: Translator, tenant: str, location: str, asked: str, status: int, body: Any) -> str:
    """One line for a ``/v1/route`` answer: the region and why, or why none."""
    if not isinstance(body, dict) or "ok" not in body:
        return t("cli.demo.route_unavailable", tenant=tenant, location=location, region=asked, status=status)
    common = dict(tenant=tenant, location=location, residency=body.get("residency") or "?")
    if body["ok"]:
        reason = body.get("reason")
        return t("cli.demo.route", region=body.get("region"), answered_by=body.get("answered_by") or asked,
                 reason=t(f"routing.reason.{reason}") if reason else "?", **common)
    if body.get("error") == "no_eligible_region":
        excluded = ", ".join(f"{region} {t(f'routing.excluded.{why}')}"
                             for region, why in sorted((body.get("excluded") or {}).items()))
        message = t("routing.error.no_eligible_region", residency=common["residency"], excluded=excluded)
    else:
        message = str(body.get("message") or body.get("error"))
    return t("cli.demo.route_refused", message=message, **common)


def ask_route(fed: LocalFederation, asked: str, tenant: str, location: str) -> tuple[int, Any]:
    return fed.http(asked, "/v1/route?" + urlencode({"tenant": tenant, "from": location}))


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
        region_map = load_model_file(regions_file, RegionMap)
        tenants = demo_tenants(regions_file.parent / "tenants.yaml", region_map)
    except ConfigError as exc:
        for issue in exc.issues:
            ctx.error(ctx.describe_issue(issue))
        return 2
    regions = list(region_map.regions)
    if args.kill and args.kill not in regions:
        ctx.error(t("cli.demo.unknown_region", region=args.kill, known=", ".join(regions)))
        return 2
    own_dir = args.dir is None
    workdir = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="meshd-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        shared = demo_shared_files(regions_file.parent, list(ctx.hooks.federation_files()))
        if tenants is not None:
            shared.append(write_tenants(tenants, workdir / "tenants.yaml"))
        fed = LocalFederation(workdir, regions_file=regions_file, federation="demo", shared_files=shared,
                              lang=t.lang, samples=True)  # as `meshd init` writes it: log-only receivers
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

    survivors = [r for r in regions if r != args.kill]
    tenant = pick_tenant(tenants, region_map, args.kill) if args.kill else None

    def show_route() -> None:
        # Asked of a survivor, from the killed region's own location: its nearby clients are the ones that move.
        if tenant is not None and survivors:
            event(describe_route(t, tenant, args.kill, survivors[0], *ask_route(fed, survivors[0], tenant, args.kill)))

    code = 0
    # SIGTERM stops the demo like Ctrl-C does, so a killed demo leaves no daemon behind. Ctrl-C is set
    # too: a shell's background job inherits SIGINT ignored, and Python then never raises KeyboardInterrupt.
    previous_term = _set_signal(signal.SIGTERM, _raise_interrupt)
    previous_int = _set_signal(signal.SIGINT, _raise_interrupt)
    try:
        fed.start(wait=False)
        event(t("cli.demo.started", count=len(regions), dir=workdir, nats=fed.servers[0].url))
        expect = {r: "alive" for r in regions}
        phase = "converging"
        killed_at = killed_wall = 0.0
        while True:
            views = _views(fed)
            if tty:
                sys.stdout.write("\x1b[H\x1b[2J" + render(views, regions, t, events) + "\n")
                sys.stdout.flush()
            if phase == "converging" and converged(views, regions, expect):
                event(t("cli.demo.converged"))
                if args.kill:
                    show_route()
                    fed.kill(args.kill)
                    killed_at, killed_wall = time.monotonic(), time.time()
                    expect[args.kill] = "dead"
                    event(t("cli.demo.killed", region=args.kill))
                    phase = "detecting"
                else:
                    phase = "done"
            elif phase == "detecting" and converged(views, regions, expect):
                event(t("cli.demo.detected", region=args.kill, seconds=t.number(time.monotonic() - killed_at, 1)))
                expected, status = failover_expected(views.get(survivors[0]) if survivors else None,
                                                     len(survivors))
                if expected:
                    phase = "failing_over"
                else:
                    if status:
                        event(t("cli.demo.no_quorum", alive=len(survivors), configured=len(regions),
                                quorum=status.get("quorum")))
                    phase = "done"
            elif phase == "failing_over":
                # Shown once every survivor has applied it, so the route asked next reflects it.
                seen = [committed_failover(views.get(r), args.kill, killed_wall - 1) for r in survivors]
                if all(d is not None and d.get("applied_at") for d in seen):
                    event(describe_failover(t, seen[0], killed_wall))  # type: ignore[arg-type]
                    show_route()
                    phase = "done"
            if phase == "done" and args.once:
                break
            if args.timeout and time.monotonic() - started > args.timeout:
                event(t("cli.demo.gave_up", seconds=args.timeout))
                code = 1
                break
            time.sleep(0.1 if phase == "detecting" else 0.25)
        if not tty:
            ctx.print(render(_views(fed), regions, t, []))
    except KeyboardInterrupt:
        if not tty:  # the live table was never drawn: show it once, as --once does
            ctx.print(render(_views(fed), regions, t, []))
        event(t("cli.demo.stopping"))
    finally:
        # A second Ctrl-C must not cut the cleanup short.
        _set_signal(signal.SIGINT, signal.SIG_IGN)
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
