"""The audit plugin inside a daemon: answer audit requests over the bus, federate them, audit on a schedule.

``meshd audit`` asks its daemon (``POST /v1/audit``); that daemon sends a
signed ``audit.run`` request to every region of the region map at once,
runs its own checks meanwhile, and merges: a region that does not answer in
time is named, and its checks are ``not_assessed`` (never passed).
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from meshd.alerting import Alert
from meshd.auditcheck import Severity
from meshd.bus import NoAnswer
from meshd.config import ConfigError
from meshd.envelope import Envelope
from meshd.i18n import Translator
from meshd.identity import Signer, load_private_key
from meshd.transport import Message

from .config import AuditConfig
from .evidence import sign_region
from .frameworks import Framework, load_frameworks
from .runner import Outcome, collect_checks, run_checks
from .scoring import not_assessed_rows, score_framework

SECTION = "audit"
RUN_KIND = "audit-run"
ALERT = "ComplianceControlFailing"
REPLY_MARGIN = 5.0
"""Seconds a region gets beyond its checks' time box to answer (its checks run concurrently)."""


PAYLOAD_SHARE = 0.4
"""Of the bus's max payload, what a region's evidence may take: each document travels twice as much text
(once in the reply's JSON string, escaped), and the results and manifest ride along."""


def fit_evidence(rows: list[dict[str, Any]], budget: int) -> None:
    """Replace the largest evidence with a note of its size until all of it fits ``budget`` bytes.

    A reply over the bus's max payload would be refused by the asker and the
    whole region reported as not answering; a signed note that a check's
    evidence was too large to send is the honest record instead.
    """
    sizes = {i: len(json.dumps(row.get("evidence") or {}, default=str)) for i, row in enumerate(rows)}
    total = sum(sizes.values())
    for i in sorted(sizes, key=lambda i: -sizes[i]):
        if total <= budget:
            return
        rows[i]["evidence"] = {"truncated": True, "bytes": sizes[i],
                               "reason": f"larger than this region may send over the bus ({budget} bytes in all)"}
        total -= sizes[i]


class BadRequest(Exception):
    """Input that names something unknown (a framework, a check) or a bad mapping file: HTTP 400, exit 2."""


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Runtime:
    def __init__(self, daemon: Any):
        self.daemon = daemon
        self.region: str = daemon.region
        self.settings: AuditConfig = daemon.plugin_config(SECTION)
        self.log = logging.getLogger(f"meshd.{self.region}.audit")
        self.t = Translator(daemon.config.daemon.lang)
        self.signer = Signer(load_private_key(daemon.config.daemon.identity.private_key))
        self.state_file = Path(daemon.state_dir) / "audit" / "controls.json"
        self.last_run: float | None = None
        self.last_error: str | None = None
        self.runs = 0
        m = daemon.metrics
        self.m_runs = m.counter("meshd_audit_runs_total", "Audits run in this region, by trigger",
                                ["trigger"])
        self.m_errors = m.counter("meshd_audit_errors_total",
                                  "Audit requests or scheduled audits that could not be answered, by reason",
                                  ["reason"])
        self.m_checks = m.counter("meshd_audit_check_results_total", "Check results in this region, by status",
                                  ["status"])

    # ------------------------------------------------------------ frameworks

    def frameworks(self, known_checks: set[str]) -> dict[str, Framework]:
        try:
            return load_frameworks(self.settings.frameworks_dir, known_checks)
        except ConfigError as exc:
            raise BadRequest(str(exc)) from None
        except FileNotFoundError as exc:
            raise BadRequest(str(exc)) from None

    # ------------------------------------------------------------ this region

    async def run_local(self, only: set[str] | None = None, trigger: str = "request") -> list[Outcome]:
        checks = collect_checks(self.daemon)
        outcomes = await run_checks(checks, self.daemon, self.settings.check_timeout, self.region, only)
        self.m_runs.labels(trigger).inc()
        for o in outcomes:
            self.m_checks.labels(o.status).inc()
        self.runs += 1
        self.last_run = time.time()
        return outcomes

    def answer(self, outcomes: list[Outcome], evidence: bool, generated_at: str) -> dict[str, Any]:
        rows = [o.to_json(evidence=False) for o in outcomes]
        out: dict[str, Any] = {"ok": True, "region": self.region, "checks": rows}
        if evidence:
            full = [o.to_json() for o in outcomes]
            fit_evidence(full, int(self.daemon.config.daemon.bus.max_payload * PAYLOAD_SHARE))
            out["evidence"] = sign_region(self.signer, self.daemon.config.daemon.federation, self.region,
                                          generated_at, full)
        return out

    async def on_request(self, envelope: Envelope, message: Message) -> None:
        body = envelope.body
        try:
            only = set(map(str, body["checks"])) if body.get("checks") is not None else None
            evidence = bool(body.get("evidence"))
            generated_at = str(body.get("generated_at") or iso(time.time()))
        except (TypeError, ValueError) as exc:
            self.m_errors.labels("bad_request").inc()
            await self.daemon.bus.reply(message, "audit.result", {"ok": False, "error": f"bad request: {exc}"})
            return
        if not self.settings.enabled:
            await self.daemon.bus.reply(message, "audit.result",
                                        {"ok": False, "error": "the audit plugin is disabled in this region"})
            return
        try:
            reply = self.answer(await self.run_local(only), evidence, generated_at)
        except Exception as exc:  # the asker gets the reason instead of waiting out its timeout
            self.m_errors.labels("failed").inc()
            self.log.exception("audit request from %s failed", envelope.sender)
            reply = {"ok": False, "error": f"the audit failed in {self.region}: {type(exc).__name__}: {exc}"}
        await self.daemon.bus.reply(message, "audit.result", reply)

    # ------------------------------------------------------------ the federation

    async def _ask(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        timeout = self.settings.check_timeout + REPLY_MARGIN
        try:
            return await self.daemon.bus.ask(RUN_KIND, "audit.run", body, target=region, timeout=timeout)
        except NoAnswer as exc:
            raise RuntimeError(str(exc)) from None

    async def federate(self, frameworks: list[str] | None = None, checks: list[str] | None = None,
                       evidence: bool = False) -> dict[str, Any]:
        """The merged audit of every region, scored per framework (the ``meshd audit --json`` document)."""
        started = time.time()
        generated_at = iso(started)
        local_checks = collect_checks(self.daemon)
        known = {c.id for c in local_checks}
        catalog = self.frameworks(known)
        unknown_fw = [f for f in frameworks or [] if f not in catalog]
        if unknown_fw:
            raise BadRequest(f"unknown framework(s) {', '.join(unknown_fw)}: expected one of {', '.join(catalog)}")
        unknown_checks = [c for c in checks or [] if c not in known]
        if unknown_checks:
            raise BadRequest(f"unknown check id(s) {', '.join(unknown_checks)}: no plugin offers them")
        chosen = [catalog[f] for f in frameworks] if frameworks else list(catalog.values())
        only = set(checks) if checks else None
        body = {"checks": sorted(only) if only is not None else None, "evidence": evidence,
                "generated_at": generated_at}
        regions = sorted(self.daemon.config.region_map.regions)
        answers: dict[str, dict[str, Any]] = {}
        errors: dict[str, str] = {}

        async def one(region: str) -> None:
            try:
                if region == self.region:
                    answers[region] = self.answer(await self.run_local(only), evidence, generated_at)
                else:
                    answers[region] = await self._ask(region, body)
            except Exception as exc:
                errors[region] = str(exc) or type(exc).__name__

        async with anyio.create_task_group() as tg:
            for region in regions:
                tg.start_soon(one, region)

        rows: list[dict[str, Any]] = []
        for region in regions:
            if region in answers:
                for row in answers[region].get("checks") or []:
                    rows.append({k: row.get(k) for k in ("id", "title", "severity", "status", "detail")}
                                | {"region": region})
        expected = [{"id": c.id, "title": c.title, "severity": str(c.severity)}
                    for c in sorted(local_checks, key=lambda c: c.id) if only is None or c.id in only]
        for region, reason in errors.items():
            rows.extend(not_assessed_rows(region, expected, f"the region did not answer: {reason}"))
        rows.sort(key=lambda r: (r["id"], r["region"]))
        result: dict[str, Any] = {
            "federation": self.daemon.config.daemon.federation,
            "generated_at": generated_at,
            "asked_by": self.region,
            "seconds": round(time.time() - started, 3),
            "regions": {r: ({"answered": True} if r in answers else {"answered": False, "error": errors[r]})
                        for r in regions},
            "missing": sorted(errors),
            "checks": rows,
            "frameworks": [score_framework(fw, rows) for fw in chosen],
        }
        if evidence:
            result["evidence"] = {r: a["evidence"] for r, a in answers.items() if "evidence" in a}
        return result

    # ------------------------------------------------------------ the schedule

    def _load_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state_file.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _save_state(self, state: dict[str, Any]) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
        tmp.replace(self.state_file)

    async def scheduled_audit(self) -> list[Alert]:
        """Audit this region once; raise an alert per control that passed and now fails, resolve the recovered."""
        outcomes = await self.run_local(trigger="schedule")
        catalog = self.frameworks({o.id for o in outcomes})
        rows = [o.to_json(evidence=False) for o in outcomes]
        state = self._load_state()
        previous: dict[str, str] = state.get("controls", {})
        firing: dict[str, dict[str, str]] = state.get("firing", {})
        current: dict[str, str] = {}
        alerts: list[Alert] = []
        threshold = Severity(self.settings.fail_on_alert)
        for fw in catalog.values():
            for control in score_framework(fw, rows)["controls"]:
                key = f"{fw.id}/{control['id']}"
                current[key] = control["status"]
                severity = Severity(control["severity"]) if control.get("severity") else None
                if (control["status"] == "fail" and previous.get(key) == "pass" and key not in firing
                        and severity is not None and severity.rank >= threshold.rank):
                    labels = {"alertname": ALERT, "severity": _alert_severity(severity), "region": self.region,
                              "framework": fw.id, "control": control["id"]}
                    firing[key] = labels
                    alerts.append(Alert(labels, self._annotations(fw, control), "firing", starts_at=time.time()))
                elif control["status"] == "pass" and key in firing:
                    labels = firing.pop(key)
                    alerts.append(Alert(labels, self._annotations(fw, control, resolved=True), "resolved",
                                        ends_at=time.time()))
        self._save_state({"controls": {**previous, **current}, "firing": firing, "at": iso(time.time())})
        for alert in alerts:
            await self.daemon.hooks.alert(self.daemon, alert)
        return alerts

    def _annotations(self, fw: Framework, control: dict[str, Any], resolved: bool = False) -> dict[str, str]:
        values = {"region": self.region, "framework": fw.name, "control": control["id"], "title": control["title"],
                  "checks": ", ".join(control["failed_checks"]) or "-"}
        key = "resolved" if resolved else "summary"
        summary = self.t(f"compliance.alert.{key}", **values)
        return {"summary": summary, "description": summary if resolved else self.t("compliance.alert.description",
                                                                                   **values)}

    async def run_schedule(self) -> None:
        await anyio.sleep(self.settings.first_audit_after)
        while True:
            if self.settings.enabled:
                try:
                    await self.scheduled_audit()
                    self.last_error = None
                except BadRequest as exc:
                    self.last_error = str(exc)
                    self.m_errors.labels("bad_mapping").inc()
                    self.log.error("scheduled audit skipped: %s", exc)
                except Exception as exc:  # the schedule must outlive one bad audit
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    self.m_errors.labels("failed").inc()
                    self.log.exception("scheduled audit failed")
            await anyio.sleep(self.settings.schedule)

    def status(self) -> dict[str, Any]:
        return {"enabled": self.settings.enabled, "runs": self.runs,
                "last_run": iso(self.last_run) if self.last_run else None, "last_error": self.last_error}


def _alert_severity(severity: Severity) -> str:
    # Alertmanager's usual severities: a critical finding pages, the rest warn.
    return "critical" if severity is Severity.CRITICAL else "warning"
