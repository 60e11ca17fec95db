"""Stand-in checks for the audit core's tests: a plugin offering checks whose verdict a test controls.

``demo.toggle`` reads ``<state_dir>/toggle`` (``pass`` or anything else:
fail) so a test can make a control fail and pass again in a running daemon.
Its evidence holds SECRET on purpose: the audit plugin must scrub it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import yaml

from meshd import AuditCheck, CheckResult, Severity, hookimpl
from meshd.alerting import Alert
from meshd.logs import register_secret

SECRET = "s3cr3t-standin-token-0123456789"
register_secret(SECRET)

ALL_PLUGINS = ["health", "membership", "failover", "routing", "alerts", "keys", "metering", "billing",
               "fencing", "partners"]

FRAMEWORKS = {
    "soc2": """\
framework: soc2
name: SOC 2
version: test
controls:
  - id: CC6.1
    title: Logical access
    checks: [demo.pass, demo.toggle]
  - id: CC6.6
    title: Boundary protection
    checks: [demo.pass]
  - id: CC7.2
    title: Monitoring
    checks: [demo.boom]
  - id: A1.2
    title: Recovery
    checks: [demo.na]
""",
    "gdpr": """\
framework: gdpr
name: GDPR
version: test
controls:
  - id: Art.32
    title: Security of processing
    checks: [demo.toggle, demo.slow]
""",
}


def write_frameworks(directory: Path, **override: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in {**FRAMEWORKS, **override}.items():
        (directory / f"{name}.yaml").write_text(text)
    return directory


def set_toggle(daemon: Any, verdict: str) -> None:
    (Path(daemon.state_dir) / "toggle").write_text(verdict)


def _pass(daemon: Any) -> CheckResult:
    return CheckResult("pass", "always passes", {"region": daemon.region, "config": {"password": "[redacted]"}})


def _toggle(daemon: Any) -> CheckResult:
    path = Path(daemon.state_dir) / "toggle"
    verdict = path.read_text().strip() if path.exists() else "pass"
    # A careless check: the token in the evidence and the detail; the audit plugin must scrub both.
    return CheckResult("pass" if verdict == "pass" else "fail", f"toggle says {verdict} (token {SECRET})",
                       {"toggle": verdict, "token": SECRET, "nested": [{"header": f"Bearer {SECRET}"}]})


def _boom(daemon: Any) -> CheckResult:
    raise RuntimeError("the probe blew up")


async def _slow(daemon: Any) -> CheckResult:
    await anyio.sleep(60)
    return CheckResult("pass", "never reached")


def _na(daemon: Any) -> CheckResult:
    return CheckResult("not_applicable", "nothing to check here")


class StandinChecks:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    @hookimpl
    def meshd_audit_checks(self, daemon: Any) -> list[AuditCheck]:
        return [
            AuditCheck("demo.pass", "Always passes", Severity.HIGH, _pass),
            AuditCheck("demo.toggle", "Follows the toggle file", Severity.CRITICAL, _toggle),
            AuditCheck("demo.boom", "Raises", Severity.MEDIUM, _boom),
            AuditCheck("demo.slow", "Outlives its time box", Severity.LOW, _slow),
            AuditCheck("demo.na", "Not applicable", Severity.LOW, _na),
        ]

    @hookimpl
    async def meshd_alert(self, daemon: Any, alert: Alert) -> None:
        self.alerts.append(alert)


def patch_configs(paths: dict[str, Path], frameworks_dir: Path, ports: dict[str, int] | None = None,
                  **audit: Any) -> None:
    for region, path in paths.items():
        data = yaml.safe_load(path.read_text())
        data["audit"] = {"frameworks_dir": str(frameworks_dir), "check_timeout": "500ms", **audit}
        data["plugins"] = {"disabled": ALL_PLUGINS}
        if ports and region in ports:
            data["http"] = {"port": ports[region]}
        path.write_text(yaml.safe_dump(data, sort_keys=False))
