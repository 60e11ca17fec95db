"""Access control: NATS permissions tried for real, the admin token, partner API keys."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from meshd.auditcheck import AuditCheck, CheckResult, Severity

from .facts import failed, file_facts, nats_client, not_applicable, others_may_read, passed, plugin
from .natsprobe import refused_publishes

if TYPE_CHECKING:
    from meshd.daemon import Daemon

PROBE_KIND = "audit-probe"
SERVER_CONF = "nats-server.conf"


def _other_region(daemon: Daemon) -> str:
    others = sorted(set(daemon.config.region_map.regions) - {daemon.region})
    # With one region, a name no region has: speaking as it must be refused just the same.
    return others[0] if others else f"not-{daemon.region}"


async def region_impersonation(daemon: Daemon) -> CheckResult:
    if nats_client(daemon) is None:
        return not_applicable("the daemon's transport is not NATS")
    other = _other_region(daemon)
    own = f"meshd.{daemon.federation}.{PROBE_KIND}.{daemon.region}"
    subject = f"meshd.{daemon.federation}.{PROBE_KIND}.{other}"
    refused = await refused_publishes(daemon, [subject, own])
    evidence = {"user": daemon.config.daemon.nats.user, "as_other_region": {"subject": subject,
                                                                           "refused": refused[subject]},
                "as_itself": {"subject": own, "refused": refused[own]}}
    if not refused[subject]:
        return failed(f"the NATS server accepted a publish on {subject} with {daemon.region}'s credentials: "
                      f"{daemon.region} can speak as {other}", **evidence)
    if refused[own]:
        return failed(f"the NATS server refused {daemon.region} on its own subject {own}: permissions are "
                      "misconfigured", **evidence)
    return passed(f"the NATS server refused {daemon.region} publishing as {other}", **evidence)


def _broad_users(conf: Path) -> list[str]:
    """Users of a nats-server config whose publish permission is ``>`` (or who have no permissions at all)."""
    try:
        text = conf.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    broad = []
    for line in text.splitlines():
        m = re.search(r"\{\s*user:\s*\"?([^\",\s]+)\"?", line)
        if not m or "password" not in line:
            continue
        if "permissions" not in line:
            broad.append(m.group(1))
            continue
        publish = re.search(r"publish\"?:\s*(\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\")", line)
        allowed = re.findall(r"\"([^\"]+)\"", publish.group(1)) if publish else []
        if publish is None or ">" in allowed:
            broad.append(m.group(1))
    return sorted(broad)


async def nats_broad_publish(daemon: Daemon) -> CheckResult:
    if nats_client(daemon) is None:
        return not_applicable("the daemon's transport is not NATS")
    probe = f"_meshd_audit.{daemon.region}.{secrets.token_hex(4)}"
    refused = (await refused_publishes(daemon, [probe]))[probe]
    conf = Path(daemon.config.path).parent / SERVER_CONF
    broad = await anyio.to_thread.run_sync(_broad_users, conf) if conf.is_file() else []
    evidence: dict[str, Any] = {"user": daemon.config.daemon.nats.user,
                                "probe": {"subject": probe, "refused": refused},
                                "server_config": str(conf) if conf.is_file() else None,
                                "broad_users_in_server_config": broad}
    if not refused:
        return failed(f"{daemon.region}'s NATS user may publish anywhere: the server accepted {probe}", **evidence)
    if broad:
        return failed(f"NATS users with publish '>' in {conf}: {', '.join(broad)}", **evidence)
    return passed(f"{daemon.region}'s NATS user is refused outside its subjects and no user in the server "
                  "config may publish '>'", **evidence)


def admin_token_mode(daemon: Daemon) -> CheckResult:
    path = Path(daemon.state_dir) / "admin.token"
    facts = file_facts(path)
    if not facts.get("exists"):
        return failed(f"the admin token {path} does not exist", admin_token=facts)
    if others_may_read(path):
        return failed(f"the admin token {path} has mode {facts['mode']}: group or others may read it (want 0600)",
                      admin_token=facts)
    return passed(f"the admin token {path} has mode {facts['mode']}", admin_token=facts)


ARGON2ID = "$argon2id$"


def api_keys_hashed(daemon: Daemon) -> CheckResult:
    partners = plugin(daemon, "partners")
    store = getattr(getattr(partners, "runtime", None), "store", None)
    if partners is None:
        return not_applicable("the partners plugin is not loaded")
    if store is None:
        return not_applicable("this region does not run the partner API (no key store)")
    keys = sorted(store.keys.values(), key=lambda k: k.key_id)
    plain = [k.key_id for k in keys if not str(k.hash).startswith(ARGON2ID)]
    evidence = {"keys": [{"key_id": k.key_id, "partner": k.partner, "revoked": bool(k.revoked),
                          "hash_scheme": str(k.hash).split("$")[1] if str(k.hash).startswith("$") else "none"}
                         for k in keys]}
    if plain:
        return failed(f"partner API keys not stored as argon2id hashes: {', '.join(plain)}", **evidence)
    return passed(f"{len(keys)} partner API keys, all stored as argon2id hashes", **evidence)


CHECKS = [
    AuditCheck("access.region_impersonation", "The NATS server refuses a region speaking as another",
               Severity.CRITICAL, region_impersonation),
    AuditCheck("access.nats_broad_publish", "No NATS user may publish on every subject", Severity.HIGH,
               nats_broad_publish),
    AuditCheck("access.admin_token_mode", "The admin API token is readable by its owner only", Severity.HIGH,
               admin_token_mode),
    AuditCheck("access.api_keys_hashed", "Partner API keys are stored hashed", Severity.HIGH, api_keys_hashed),
]
