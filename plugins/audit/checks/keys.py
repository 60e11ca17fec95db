"""Key management: rotation across the federation, and no data left under a retired key version."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from meshd.auditcheck import AuditCheck, CheckResult, Severity

from .facts import failed, not_applicable, passed, plugin

if TYPE_CHECKING:
    from meshd.daemon import Daemon

KEY_FACTS = ("purpose", "key_id", "version", "created", "rotate_by", "age_s", "overdue", "min_decryption_version",
             "min_encryption_version", "versions", "fingerprint")
TEXT_VERSION = re.compile(r"meshd:v(\d+):")


def _status(daemon: Daemon) -> dict[str, Any] | None:
    keys = plugin(daemon, "keys")
    if keys is None:
        return None
    status: dict[str, Any] = keys.status_doc(daemon)
    return status


def rotation(daemon: Daemon) -> CheckResult:
    status = _status(daemon)
    if status is None:
        return not_applicable("the keys plugin is not loaded")
    if not status["ok"]:
        return failed(f"the region's keys are unavailable: {status['error']}", kms=status["kms"])
    view = dict(status["federation"])
    # This region's own keyrings, as of now, even before its first announcement.
    view[daemon.region] = {"stale": False, "keyrings": status["keyrings"]}
    evidence = {region: {"stale": entry.get("stale", False),
                         "keyrings": [{k: ring.get(k) for k in KEY_FACTS} for ring in entry.get("keyrings", [])]}
                for region, entry in sorted(view.items())}
    overdue = [f"{region}/{ring['purpose']} (version {ring['version']}, {int(ring['age_s'] // 86400)} days old)"
               for region, entry in sorted(view.items()) for ring in entry.get("keyrings", []) if ring.get("overdue")]
    missing = sorted(set(daemon.config.region_map.regions) - set(view))
    if overdue:
        return failed(f"keys overdue for rotation: {', '.join(overdue)}", regions=evidence, not_announced=missing)
    # A region not heard from is not failed here: it runs this check on its own keys, and a region that
    # does not answer the audit counts as not assessed.
    count = sum(len(e["keyrings"]) for e in evidence.values())
    return passed(f"{count} keyrings in {len(evidence)} regions, all within their rotation period", regions=evidence,
                  not_announced=missing)


def _config_versions(path: Path) -> list[int]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return sorted({int(v) for v in TEXT_VERSION.findall(text)})


def _ledger_versions(path: Path) -> list[int]:
    if not path.is_file():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
    try:
        rows = conn.execute("SELECT DISTINCT CAST(substr(data, 8, instr(substr(data, 8), ':') - 1) AS INTEGER) "
                            "FROM aggregates WHERE data LIKE 'meshd:v%'").fetchall()
    except sqlite3.Error:
        return []
    finally:
        conn.close()
    return sorted(int(r[0]) for r in rows if r[0])


async def retired_versions(daemon: Daemon) -> CheckResult:
    status = _status(daemon)
    if status is None:
        return not_applicable("the keys plugin is not loaded")
    rings = {r["purpose"]: r for r in status["keyrings"]}
    stored: dict[str, dict[str, list[int]]] = {}
    stored.setdefault("secrets", {})["config"] = await anyio.to_thread.run_sync(
        _config_versions, Path(daemon.config.path))
    metering = getattr(plugin(daemon, "metering"), "runtime", None)
    if metering is not None and getattr(metering, "ledger", None) is not None:
        stored.setdefault("metering", {})["ledger"] = await anyio.to_thread.run_sync(
            _ledger_versions, Path(metering.ledger_path()))
    evidence = {"keyrings": {p: {"version": r["version"], "min_decryption_version": r["min_decryption_version"],
                                 "min_encryption_version": r["min_encryption_version"]} for p, r in rings.items()},
                "versions_stored": stored}
    problems = []
    for purpose, places in sorted(stored.items()):
        ring = rings.get(purpose)
        for where, versions in sorted(places.items()):
            if ring is None:
                continue
            retired = [v for v in versions if v < ring["min_decryption_version"]]
            if retired:
                problems.append(f"{where} still holds data under retired version(s) "
                                f"{', '.join(map(str, retired))} of keyring {purpose} "
                                f"(min_decryption_version {ring['min_decryption_version']})")
    if problems:
        return failed("; ".join(problems), **evidence)
    return passed("no stored data uses a retired key version", **evidence)


CHECKS = [
    AuditCheck("keys.rotation", "Every keyring in the federation is within its rotation period", Severity.HIGH,
               rotation),
    AuditCheck("keys.retired_versions", "No retired key version is still in use", Severity.MEDIUM, retired_versions),
]
