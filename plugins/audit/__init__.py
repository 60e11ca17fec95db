"""The audit plugin: compliance checks run in every region, mapped to SOC 2, ISO 27001, GDPR, PIPEDA, HIPAA.

See docs/audit.md. Each region runs the checks plugins offer through
``meshd_audit_checks`` and answers ``audit.run`` requests over the signed
bus; ``meshd audit`` asks its daemon (admin HTTP API), which asks every
region, merges, and scores the controls of each framework
(``etc/compliance/*.yaml``).
"""

from __future__ import annotations

from typing import Any

import meshd
from meshd import hookimpl

from .config import AuditConfig

SECTION = "audit"


class AuditPlugin:
    def __init__(self) -> None:
        self.runtime: Any = None

    @hookimpl
    def meshd_config_models(self) -> dict[str, type]:
        return {SECTION: AuditConfig}

    @hookimpl
    def meshd_status(self, daemon: meshd.Daemon) -> dict[str, Any]:
        return {SECTION: self.runtime.status() if self.runtime else {"state": "starting"}}
