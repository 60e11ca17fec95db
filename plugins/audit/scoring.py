"""Scores: from the regions' check outcomes to each control's and each framework's score.

The formula (docs/audit.md). Every check runs in every region, so the unit
of scoring is one check in one region (a *result*):

* a result is ``pass``, ``fail`` (``error`` counts as ``fail``: a check
  that cannot tell is no evidence of compliance), ``not_applicable``, or
  ``not_assessed`` (the region did not answer);
* a control's *counted* results are those of its mapped checks in every
  region, except ``not_applicable``; its score = passed results / counted
  results, so a region that did not answer lowers it and is never counted
  as passed; its status is ``fail`` when any result failed, else
  ``not_assessed`` when any was not assessed (or nothing was counted), else
  ``pass``;
* a framework's score = the mean of the scores of its controls that counted
  anything (a control whose checks are all not applicable is left out).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from meshd.auditcheck import Severity

from .frameworks import Framework

FAILED = {"fail", "error"}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _worst(severities: Iterable[str]) -> str | None:
    known = [Severity(s) for s in severities if s in Severity._value2member_map_]
    return str(max(known, key=lambda s: s.rank)) if known else None


def score_framework(framework: Framework, checks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``checks``: the merged rows (id, severity, region, status) of every region."""
    by_id: dict[str, list[Mapping[str, Any]]] = {}
    for row in checks:
        by_id.setdefault(row["id"], []).append(row)
    controls = []
    for control in framework.controls:
        rows = [row for cid in control.checks for row in by_id.get(cid, [])]
        counted = [row for row in rows if row["status"] != "not_applicable"]
        passed = sum(1 for row in counted if row["status"] == "pass")
        failed_rows = [row for row in counted if row["status"] in FAILED]
        unanswered = [row for row in counted if row["status"] == "not_assessed"]
        missing = [cid for cid in control.checks if cid not in by_id]
        score = passed / len(counted) if counted else None
        if failed_rows:
            status = "fail"
        elif unanswered or missing or not counted:
            status = "not_assessed"
        else:
            status = "pass"
        failed_checks = list(dict.fromkeys(row["id"] for row in failed_rows))
        controls.append({
            "id": control.id, "title": control.title, "score": _round(score), "status": status,
            "checks": list(control.checks), "failed_checks": failed_checks,
            "failed_in": sorted({row["region"] for row in failed_rows}),
            "not_assessed_checks": list(dict.fromkeys([*(row["id"] for row in unanswered), *missing])),
            "severity": _worst(row.get("severity", "") for row in failed_rows),
            "passed": passed, "counted": len(counted),
        })
    scored = [c["score"] for c in controls if c["score"] is not None]
    return {"id": framework.id, "name": framework.name, "version": framework.version,
            "score": _round(sum(scored) / len(scored)) if scored else None,
            "scored_controls": len(scored), "controls": controls}


def not_assessed_rows(region: str, known: Iterable[Mapping[str, Any]], reason: str) -> list[dict[str, Any]]:
    """The rows of a region that did not answer: every check the others ran, ``not_assessed``."""
    return [{"id": c["id"], "title": c.get("title", c["id"]), "severity": c.get("severity", "medium"),
             "region": region, "status": "not_assessed", "detail": reason} for c in known]


def worst_failure(frameworks: Sequence[Mapping[str, Any]]) -> Severity | None:
    """The highest severity among the failed controls of the reported frameworks."""
    worst = _worst(c["severity"] for fw in frameworks for c in fw["controls"]
                   if c["status"] == "fail" and c.get("severity"))
    return Severity(worst) if worst else None
