"""The merged audit as OSCAL assessment results (NIST's JSON format for assessments).

One ``result`` per audit; one ``observation`` per check and region (method
TEST: the checks inspect the running system), one ``finding`` per control of
each reported framework, whose target status is ``satisfied`` or
``not-satisfied`` (a control not assessed is ``not-satisfied`` with the reason
in its remarks: OSCAL has no third state and an unassessed control is not
satisfied). OSCAL control ids are tokens, so ``164.312(a)(1)`` becomes
``hipaa-164.312-a-1``; the original id is kept in a ``control-id`` property.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

OSCAL_VERSION = "1.1.2"
_NS = uuid.UUID("6c1f3b0e-5b7e-4f4a-9a57-2f5e0e3c9a11")
"""Namespace of the name-based UUIDs: the same audit gives the same observation ids."""


def token(framework: str, control_id: str) -> str:
    """An OSCAL token (letter first; letters, digits, ``.``, ``-``, ``_``) for ``control_id`` of ``framework``."""
    body = re.sub(r"[^A-Za-z0-9._-]+", "-", control_id).strip("-").lower()
    return f"{framework}-{body}"


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(_NS, "\x1f".join(parts)))


def _prop(name: str, value: str) -> dict[str, str]:
    return {"name": name, "ns": "https://meshd.dev/ns/audit", "value": value}


def _line(text: str) -> str:
    return " ".join(str(text).split()) or "-"


def assessment_results(result: Mapping[str, Any]) -> dict[str, Any]:
    generated = str(result["generated_at"])
    run = _uuid("result", str(result["federation"]), generated)
    observations: list[dict[str, Any]] = []
    obs_by_check: dict[str, list[str]] = {}
    for row in result["checks"]:
        oid = _uuid(run, row["id"], row["region"])
        obs_by_check.setdefault(row["id"], []).append(oid)
        observations.append({
            "uuid": oid,
            "title": _line(f"{row['id']} in {row['region']}"),
            "description": _line(row.get("detail") or row.get("title") or row["id"]),
            "props": [_prop("check-id", row["id"]), _prop("region", row["region"]),
                      _prop("status", row["status"]), _prop("severity", str(row.get("severity") or "medium"))],
            "methods": ["TEST"],
            "collected": generated,
        })
    findings: list[dict[str, Any]] = []
    selected: list[dict[str, str]] = []
    for fw in result["frameworks"]:
        for control in fw["controls"]:
            target = token(fw["id"], control["id"])
            selected.append({"control-id": target})
            related = [{"observation-uuid": oid} for cid in control["checks"] for oid in obs_by_check.get(cid, [])]
            finding: dict[str, Any] = {
                "uuid": _uuid(run, fw["id"], control["id"]),
                "title": _line(f"{fw['name']} {control['id']}: {control['title']}"),
                "description": _line(
                    f"score {control['score'] if control['score'] is not None else 'n/a'}; status {control['status']}"
                    + (f"; failed checks: {', '.join(control['failed_checks'])}" if control["failed_checks"] else "")),
                "props": [_prop("framework", fw["id"]), _prop("control-id", control["id"])],
                "target": {
                    "type": "objective-id",
                    "target-id": target,
                    "status": {"state": "satisfied" if control["status"] == "pass" else "not-satisfied"},
                },
            }
            if control["status"] == "not_assessed":
                finding["remarks"] = "Not assessed: a region did not answer or no check applied."
            if related:
                finding["related-observations"] = related
            findings.append(finding)
    missing = [r for r, info in result["regions"].items() if not info.get("answered")]
    res: dict[str, Any] = {
        "uuid": run,
        "title": _line(f"meshd compliance audit of federation {result['federation']}"),
        "description": _line(f"Checks run in {len(result['regions'])} region(s) of federation "
                             f"{result['federation']}" + (f"; no answer from {', '.join(missing)}" if missing else "")),
        "start": generated,
        "reviewed-controls": {"control-selections": [{"include-controls": selected} if selected
                                                     else {"include-all": {}}]},
    }
    if observations:
        res["observations"] = observations
    if findings:
        res["findings"] = findings
    return {"assessment-results": {
        "uuid": str(uuid.uuid4()),
        "metadata": {"title": _line(f"Compliance audit: {result['federation']}"), "last-modified": generated,
                     "version": generated, "oscal-version": OSCAL_VERSION},
        "import-ap": {"href": "#meshd-audit-plan"},
        "results": [res],
    }}
