"""Run this region's checks: each one time-boxed, one that raises recorded as ``error``, secrets scrubbed."""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from meshd.auditcheck import AuditCheck, CheckResult
from meshd.logs import scrub


@dataclass(frozen=True)
class Outcome:
    """One check's result in one region, ready for the bus: JSON-able, scrubbed."""

    id: str
    title: str
    severity: str
    region: str
    status: str
    detail: str
    evidence: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self, evidence: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "title": self.title, "severity": self.severity, "region": self.region,
                               "status": self.status, "detail": self.detail, "seconds": round(self.seconds, 4)}
        if evidence:
            out["evidence"] = self.evidence
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], region: str) -> Outcome:
        return cls(str(data["id"]), str(data.get("title") or data["id"]), str(data.get("severity") or "medium"),
                   region, str(data["status"]), str(data.get("detail") or ""),
                   dict(data.get("evidence") or {}), float(data.get("seconds") or 0.0))


def scrubbed(value: Any) -> Any:
    """``value`` made JSON-able, with every registered secret masked wherever it appears."""
    text = json.dumps(value, default=str, sort_keys=True)
    return json.loads(scrub(text))


async def run_one(check: AuditCheck, daemon: Any, timeout: float, region: str) -> Outcome:
    started = time.monotonic()
    try:
        with anyio.fail_after(timeout):
            result = check.run(daemon)
            if inspect.isawaitable(result):
                result = await result
        if not isinstance(result, CheckResult):
            raise TypeError(f"returned {type(result).__name__}, expected a CheckResult")
        status, detail, evidence = result.status, result.detail, dict(result.evidence)
    except TimeoutError:
        status, detail, evidence = "error", f"did not finish within {timeout:g}s", {}
    except Exception as exc:
        status, detail, evidence = "error", f"{type(exc).__name__}: {exc}", {}
    detail = " ".join(scrub(str(detail)).split())  # one line
    return Outcome(check.id, check.title, str(check.severity), region, status, detail,
                   scrubbed(evidence), time.monotonic() - started)


async def run_checks(checks: Sequence[AuditCheck], daemon: Any, timeout: float, region: str,
                     only: set[str] | None = None) -> list[Outcome]:
    """Run ``checks`` (those in ``only``, when given) concurrently; results in check-id order."""
    selected = [c for c in checks if only is None or c.id in only]
    outcomes: dict[int, Outcome] = {}

    async def one(i: int, check: AuditCheck) -> None:
        outcomes[i] = await run_one(check, daemon, timeout, region)

    async with anyio.create_task_group() as tg:
        for i, check in enumerate(selected):
            tg.start_soon(one, i, check)
    return sorted(outcomes.values(), key=lambda o: o.id)


def collect_checks(daemon: Any) -> list[AuditCheck]:
    """Every plugin's checks from ``meshd_audit_checks``; a later duplicate id is dropped (first plugin wins)."""
    results = daemon.hooks.call_sync("meshd_audit_checks", daemon=daemon) or []
    seen: dict[str, AuditCheck] = {}
    for batch in results:
        for check in batch or ():
            if isinstance(check, AuditCheck):
                seen.setdefault(check.id, check)
    return list(seen.values())

