"""Logging and monitoring: the hash-chained audit logs, the dead man's switch, the alert receivers."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from meshd.auditcheck import AuditCheck, CheckResult, Severity
from meshd.logs import scrub

from .facts import failed, not_applicable, passed, plugin, section

if TYPE_CHECKING:
    from meshd.daemon import Daemon

DEADMAN = "DeadMansSwitch"
DEFAULT_REPEAT_INTERVAL = 4 * 3600.0
OUTBOX_ROWS = 500
"""Recent notifications searched for the dead man's switch (it repeats, so it is never far back)."""


def audit_logs(daemon: Daemon) -> dict[str, Path]:
    """Every hash-chained audit log of this region, by the plugin that writes it."""
    state = Path(daemon.state_dir)
    logs: dict[str, Path] = {}
    if plugin(daemon, "failover") is not None:
        logs["failover"] = state / "failover" / "audit.log"
    partners = section(daemon, "partners")
    if plugin(daemon, "partners") is not None and partners is not None:
        logs["partners"] = Path(partners.audit_log) if partners.audit_log else state / "partners" / "audit.log"
    return logs


def _verify(path: Path, daemon: Daemon) -> Any:
    """The log's verification, or None when neither the log nor its head exists yet."""
    from meshd.identity import TrustStore
    from meshd_plugins.failover.audit import HEAD_SUFFIX, verify

    if not path.exists() and not Path(str(path) + HEAD_SUFFIX).exists():
        return None
    return verify(path, trust=TrustStore(daemon.config.trust), region=daemon.region)


async def audit_chains(daemon: Daemon) -> CheckResult:
    logs = audit_logs(daemon)
    if not logs:
        return not_applicable("no plugin that keeps a hash-chained audit log is loaded (failover, partners)")
    chains: dict[str, Any] = {}
    problems: list[str] = []
    for name, path in logs.items():
        result = await anyio.to_thread.run_sync(_verify, path, daemon)
        if result is None:
            chains[name] = {"path": str(path), "exists": False}
            continue
        last = result.entries[-1] if result.entries else None
        chains[name] = {"path": str(path), "entries": len(result.entries), "head_seq": result.head_seq,
                        "head_signed_by": result.head_signed_by, "torn_tail": result.torn_tail,
                        "last_hash": last.hash if last else None,
                        "problem": None if result.ok else {"code": result.problem.code, "entry": result.problem.seq,
                                                           "line": result.problem.line}}
        if not result.ok:
            problems.append(f"{name} audit log {path} does not verify: {result.problem}")
    if problems:
        return failed("; ".join(problems), chains=chains)
    checked = [n for n, c in chains.items() if c.get("exists", True)]
    if not checked:
        return not_applicable("no audit log written yet", chains=chains)
    return passed(f"audit log chains verify: {', '.join(checked)}", chains=chains)


def _is_deadman(content: dict[str, Any]) -> bool:
    return any(isinstance(a, dict) and a.get("labels", {}).get("alertname") == DEADMAN
               for a in content.get("alerts", [])) or DEADMAN in json.dumps(content.get("group_labels", {}))


def _deadman_routes(runtime: Any) -> tuple[list[str], float]:
    """The receivers the DeadMansSwitch alert is routed to, and the longest repeat interval among them."""
    states = [s for s in runtime.dispatcher.states(time.time()) if s.tracked.alert.labels.get("alertname") == DEADMAN]
    fingerprints = {s.tracked.fingerprint for s in states}
    receivers = {r for s in states for r in s.routes}
    repeat = max((float(g.route.repeat_interval) for g in list(runtime.dispatcher.groups.values())
                  if g.fingerprints & fingerprints), default=0.0)
    return sorted(receivers), repeat or DEFAULT_REPEAT_INTERVAL


async def deadman(daemon: Daemon) -> CheckResult:
    alerts = plugin(daemon, "alerts")
    runtime = getattr(alerts, "runtime", None)
    if alerts is None or runtime is None:
        return not_applicable("the alerts plugin is not loaded")
    settings = runtime.settings.deadman
    evidence: dict[str, Any] = {"enabled": settings.enabled, "refresh_s": settings.refresh,
                                "log_only": runtime.log_only}
    if not settings.enabled:
        return failed("the dead man's switch is disabled (alerts.deadman.enabled is false)", **evidence)
    if runtime.log_only:
        return failed("alerts are only logged (no receiver has a URL): the dead man's switch reaches no one",
                      **evidence)
    receivers, repeat = _deadman_routes(runtime)
    max_age = 2 * repeat + settings.refresh
    rows = await runtime.outbox.run(runtime.outbox.sync.recent, OUTBOX_ROWS)
    sent = [r for r in rows if r.outcome == "sent" and r.done_at and _is_deadman(r.content)]
    last = max((r.done_at for r in sent), default=None)
    now = time.time()
    evidence.update(receivers=receivers, max_age_s=max_age,
                    last_delivered_at=last, last_delivered_age_s=round(now - last, 3) if last else None,
                    last_receiver=max(sent, key=lambda r: r.done_at).receiver if sent else None)
    if not receivers:
        return failed("the DeadMansSwitch alert is routed to no receiver", **evidence)
    if last is None:
        return failed(f"the dead man's switch never reached its receiver ({', '.join(receivers)}) in the last "
                      f"{len(rows)} notifications", **evidence)
    if now - last > max_age:
        return failed(f"the dead man's switch last reached {evidence['last_receiver']} {int(now - last)} s ago "
                      f"(more than {int(max_age)} s)", **evidence)
    return passed(f"the dead man's switch reached {evidence['last_receiver']} {int(now - last)} s ago", **evidence)


def receivers(daemon: Daemon) -> CheckResult:
    alerts = plugin(daemon, "alerts")
    runtime = getattr(alerts, "runtime", None)
    if alerts is None or runtime is None:
        return not_applicable("the alerts plugin is not loaded")
    listing = runtime.receivers_json()
    evidence = {"routes_file": str(runtime.tree.path), "log_only": runtime.log_only,
                "receivers": [{"name": r["name"], "targets": r["targets"], "problem": r["problem"] and scrub(r["problem"]),
                               "broken": r["broken"] and scrub(r["broken"])} for r in listing]}
    bad = [f"{r['name']} ({scrub(r['problem'] or r['broken'])})" for r in listing if r["problem"] or r["broken"]]
    if bad:
        return failed(f"broken alert receivers: {'; '.join(bad)}", **evidence)
    return passed(f"{len(listing)} alert receivers, none broken", **evidence)


CHECKS = [
    AuditCheck("logging.audit_chains", "Every hash-chained audit log verifies", Severity.HIGH, audit_chains),
    AuditCheck("logging.deadman", "The dead man's switch reached its receiver recently", Severity.MEDIUM, deadman),
    AuditCheck("logging.receivers", "No alert receiver is broken", Severity.HIGH, receivers),
]
