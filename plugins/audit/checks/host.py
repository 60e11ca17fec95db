"""The host: the daemon's user, its state directory's modes and the systemd unit's exposure."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from meshd.auditcheck import AuditCheck, CheckResult, Severity

from .facts import failed, file_facts, not_applicable, passed, section

if TYPE_CHECKING:
    from meshd.daemon import Daemon

SECRET_NAMES = re.compile(r"(^kek$|\.key$|\.token$|\.nats-password$|\.seed$|\.creds$|^keys/[^/]+\.json$)")
"""Files of the state directory that hold secrets (keyrings hold wrapped keys, still not for others to read)."""
MAX_FILES = 5000
MAX_EXPOSURE = 5.0
"""``systemd-analyze security`` rates below 5 "OK" or better; 5 and above is MEDIUM, EXPOSED or UNSAFE."""
SYSTEMD_TIMEOUT = 4.0


def _capabilities() -> str | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return line.split()[1]
    except OSError:
        pass
    return None


def not_root(daemon: Daemon | None) -> CheckResult:
    uid, euid = os.getuid(), os.geteuid()
    caps = _capabilities()
    evidence = {"uid": uid, "euid": euid, "gid": os.getgid(), "effective_capabilities": caps}
    if uid == 0 or euid == 0:
        return failed(f"the daemon runs as root (uid {uid}, euid {euid})", **evidence)
    if caps and int(caps, 16):
        return failed(f"the daemon runs as uid {euid} but holds capabilities {caps}", **evidence)
    return passed(f"the daemon runs as uid {euid} without capabilities", **evidence)


def _scan(state: Path) -> tuple[list[dict[str, Any]], int]:
    offenders: list[dict[str, Any]] = []
    seen = 0
    for root, _dirs, files in os.walk(state):
        for name in files:
            seen += 1
            if seen > MAX_FILES:
                return offenders, seen
            path = Path(root) / name
            rel = path.relative_to(state).as_posix()
            if not SECRET_NAMES.search(rel) and not SECRET_NAMES.search(name):
                continue
            facts = file_facts(path)
            if facts.get("exists") and int(facts["mode"], 8) & 0o077:
                offenders.append({"file": rel, "mode": facts["mode"]})
    return offenders, seen


async def state_dir_modes(daemon: Daemon) -> CheckResult:
    state = Path(daemon.state_dir)
    top = file_facts(state)
    key = file_facts(Path(daemon.config.daemon.identity.private_key))
    offenders, seen = await anyio.to_thread.run_sync(_scan, state)
    evidence = {"state_dir": top, "identity_key": key, "files_seen": seen, "secret_files_too_open": offenders}
    problems = []
    if top.get("exists") and int(top["mode"], 8) & 0o077:
        problems.append(f"the state directory {state} has mode {top['mode']} (want 0700)")
    if key.get("exists") and int(key["mode"], 8) & 0o077:
        problems.append(f"the identity key {key['path']} has mode {key['mode']} (want 0600)")
    if offenders:
        problems.append("secret files others may read: " + ", ".join(f"{o['file']} {o['mode']}" for o in offenders))
    if problems:
        return failed("; ".join(problems), **evidence)
    return passed(f"the state directory {state} is {top.get('mode')} and its secret files are 0600", **evidence)


def systemd_present() -> bool:
    return os.path.isdir("/run/systemd/system") and shutil.which("systemd-analyze") is not None


def unit_name() -> str | None:
    """The systemd unit this process runs in, from its cgroup, or None outside a service."""
    try:
        text = Path("/proc/self/cgroup").read_text()
    except OSError:
        return None
    m = re.search(r"/([^/\s]+\.service)(/|$)", text, re.MULTILINE)
    return m.group(1) if m else None


EXPOSURE = re.compile(r"Overall exposure level for (\S+):\s*([\d.]+)\s+(\S+)")


def parse_exposure(output: str) -> tuple[float, str] | None:
    m = EXPOSURE.search(output)
    return (float(m.group(2)), m.group(3)) if m else None


INSTALLED_UNITS = (Path("/etc/systemd/system/meshd@.service"), Path("/usr/lib/systemd/system/meshd@.service"),
                   Path("/lib/systemd/system/meshd@.service"))
"""Where the packaged or hand-installed unit lives, in systemd's own lookup order."""


def unit_file(daemon: Daemon) -> Path | None:
    """The unit file a systemd would run this daemon with: ``audit.systemd_unit``, else an installed one."""
    audit = section(daemon, "audit")
    configured = getattr(audit, "systemd_unit", None)
    if configured:
        return Path(configured)
    return next((p for p in INSTALLED_UNITS if p.is_file()), None)


async def _analyze(argv: list[str], subject: str, evidence: dict[str, Any]) -> CheckResult:
    with anyio.fail_after(SYSTEMD_TIMEOUT):
        proc = await anyio.run_process(argv, check=False)
    output = proc.stdout.decode(errors="replace")
    parsed = parse_exposure(output)
    evidence.update({"command": argv, "exit_status": proc.returncode, "max_exposure": MAX_EXPOSURE,
                     "output_tail": output.strip().splitlines()[-25:]})
    if parsed is None:
        stderr = proc.stderr.decode(errors="replace").strip().splitlines()
        evidence["stderr_tail"] = stderr[-5:]
        return failed(f"`{' '.join(argv)}` printed no exposure level (exit {proc.returncode})", **evidence)
    score, label = parsed
    evidence.update(exposure=score, label=label)
    if score >= MAX_EXPOSURE:
        return failed(f"{subject} has exposure {score} {label} (want below {MAX_EXPOSURE})", **evidence)
    return passed(f"{subject} has exposure {score} {label}", **evidence)


async def systemd_exposure(daemon: Daemon) -> CheckResult:
    """The running unit when systemd manages the daemon; otherwise the unit file it would run with, offline.

    ``systemd-analyze security --offline=true FILE`` rates a unit file
    without a running systemd (a container, a host where the daemon is
    started another way), so the unit that will be used is still rated.
    """
    unit = unit_name() if systemd_present() else None
    if unit is not None and unit.startswith("meshd"):
        return await _analyze(["systemd-analyze", "security", "--no-pager", unit], f"unit {unit}",
                              {"mode": "running", "unit": unit})
    binary = shutil.which("systemd-analyze")
    path = unit_file(daemon)
    why = "systemd does not manage this daemon" if unit is None else f"the daemon runs in {unit}, not a meshd unit"
    if path is None:
        return not_applicable(f"{why} and no meshd unit file is installed (nor set in audit.systemd_unit)")
    if binary is None:
        return not_applicable(f"{why}, and systemd-analyze is not installed to rate the unit file {path}")
    if not path.is_file():
        return failed(f"audit.systemd_unit {path} is not a file", mode="offline", unit_file=str(path))
    return await _analyze([binary, "security", "--no-pager", "--offline=true", str(path)], f"unit file {path}",
                          {"mode": "offline", "unit_file": str(path)})


CHECKS = [
    AuditCheck("host.not_root", "The daemon does not run as root", Severity.HIGH, not_root),
    AuditCheck("host.state_dir_modes", "The state directory is 0700 and its secrets 0600", Severity.HIGH,
               state_dir_modes),
    AuditCheck("host.systemd_exposure", "The systemd unit is hardened (systemd-analyze security)", Severity.MEDIUM,
               systemd_exposure),
]
