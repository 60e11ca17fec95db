"""Encryption at rest: the metering ledger, secrets in the config, the key-encryption key."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshd.auditcheck import AuditCheck, CheckResult, Severity
from meshd.yamlsource import EncryptedValue

from .facts import failed, file_facts, not_applicable, others_may_read, passed, plugin, secret_key, section

if TYPE_CHECKING:
    from meshd.daemon import Daemon

PASSWORD_FILE_PATTERNS = ("*.nats-password", "secrets/*.nats-password", "*.password", "secrets/*.password")


def _enabled_runtime(daemon: Daemon, name: str) -> tuple[Any, CheckResult | None]:
    """Plugin ``name``'s runtime, or why a check of what it stores does not apply here."""
    loaded = plugin(daemon, name)
    runtime = getattr(loaded, "runtime", None)
    if loaded is None or runtime is None:
        return None, not_applicable(f"the {name} plugin is not loaded")
    if runtime.state == "disabled":
        return None, not_applicable(f"{name} is disabled in this region ({runtime.detail})")
    return runtime, None


def ledger_encrypted(daemon: Daemon) -> CheckResult:
    runtime, skip = _enabled_runtime(daemon, "metering")
    if skip is not None:
        return skip
    settings = runtime.settings
    ledger = runtime.ledger
    evidence: dict[str, Any] = {"ledger": str(runtime.ledger_path()), "state": runtime.state,
                                "require_encryption": settings.require_encryption}
    if ledger is None:
        return failed(f"the metering ledger is not open ({runtime.state}: {runtime.detail or 'starting'})",
                      **evidence)
    # Every shard, as stored: with several partitions, workers write some of them in other processes.
    shards = {str(lg.path): lg.stored_mode() for lg in getattr(runtime, "ledgers", {}).values()} or \
        {str(ledger.path): ledger.stored_mode()}
    evidence["at_rest"] = ledger.at_rest.mode
    evidence["shards"] = shards
    plain = sorted(path for path, mode in shards.items() if mode != "keyring")
    if ledger.at_rest.mode != "keyring" or plain:
        which = ", ".join(plain) or evidence["ledger"]
        return failed(f"the metering ledger {which} is stored in plaintext: no keyring for purpose "
                      "'metering'", **evidence)
    what = "ledger" if len(shards) == 1 else f"ledger ({len(shards)} shards)"
    return passed(f"the metering {what} {evidence['ledger']} is encrypted with the region's keyring", **evidence)


def invoices_encrypted(daemon: Daemon) -> CheckResult:
    runtime, skip = _enabled_runtime(daemon, "billing")
    if skip is not None:
        return skip
    store = runtime.store
    evidence: dict[str, Any] = {"store": str(store.root), "state": runtime.state, "at_rest": store.mode,
                                "encrypt_store": runtime.settings.encrypt_store}
    if runtime.state != "running":
        return failed(f"the invoice store is not open ({runtime.state}: {runtime.detail or 'starting'})",
                      **evidence)
    if store.mode != "keyring":
        reason = ("billing.encrypt_store is false" if not runtime.settings.encrypt_store
                  else "no keyring for purpose 'invoices'")
        return failed(f"the invoice store {store.root} is written in plaintext: {reason}", **evidence)
    left = sorted(str(p) for p in store.plaintext_files())
    evidence["plaintext_documents"] = left
    if left:
        return failed(f"{len(left)} invoice documents are still plaintext, e.g. {left[0]}", **evidence)
    return passed(f"the invoice store {store.root} is encrypted with the region's keyring", **evidence)


def _has_userinfo_password(value: Any) -> bool:
    if not isinstance(value, str) or "://" not in value:
        return False
    authority = value.split("://", 1)[1].split("/", 1)[0]
    return "@" in authority and ":" in authority.split("@", 1)[0]


def _secret_values(data: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` of every secret-looking setting in the raw config, URLs with a password included."""
    items = data.items() if isinstance(data, Mapping) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        here = (*path, str(key))
        if isinstance(value, Mapping | list):
            yield from _secret_values(value, here)
        elif isinstance(key, str) and secret_key(key) and value not in (None, ""):
            yield ".".join(here), value
        elif _has_userinfo_password(value):
            yield ".".join(here), value


def _under_secrets_map(data: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(data, Mapping):
        for key, value in data.items():
            if key == "secrets" and isinstance(value, Mapping):
                for name, v in value.items():
                    yield f"secrets.{name}", v
            elif isinstance(value, Mapping):
                for name, v in _under_secrets_map(value):
                    yield f"{key}.{name}", v


def config_secrets_encrypted(daemon: Daemon) -> CheckResult:
    data = daemon.config.source.data
    found = dict(_secret_values(data))
    found.update(dict(_under_secrets_map(data)))
    plaintext = sorted(k for k, v in found.items() if not isinstance(v, EncryptedValue))
    nats = daemon.config.daemon.nats
    config_dir = Path(daemon.config.path).parent
    secret_files = [str(p) for p in (nats.password_file, nats.token_file) if p is not None]
    left = sorted({str(p) for pattern in PASSWORD_FILE_PATTERNS for p in config_dir.glob(pattern)}
                  | {str(p) for pattern in PASSWORD_FILE_PATTERNS for p in Path(daemon.state_dir).glob(pattern)})
    evidence = {"config": str(daemon.config.path),
                "secret_settings": {k: "encrypted" if isinstance(found[k], EncryptedValue) else "plaintext"
                                    for k in sorted(found)},
                "password_files_in_config": secret_files, "password_files_found": left}
    problems = []
    if plaintext:
        problems.append(f"plaintext secret in {', '.join(plaintext)} (write it !encrypted)")
    if secret_files:
        problems.append(f"the NATS credential is read from plaintext file {', '.join(secret_files)}")
    leftovers = sorted(set(left) - {str(Path(f).resolve()) for f in secret_files} - set(secret_files))
    if leftovers:
        problems.append(f"plaintext password file left: {', '.join(leftovers)}")
    if problems:
        return failed("; ".join(problems), **evidence)
    return passed(f"{len(found)} secret settings, all !encrypted; no plaintext password file", **evidence)


def kek_protected(daemon: Daemon) -> CheckResult:
    settings = section(daemon, "keys")
    if plugin(daemon, "keys") is None or settings is None:
        return not_applicable("the keys plugin is not loaded")
    kms = settings.kms
    evidence: dict[str, Any] = {"provider": kms.provider, "jurisdiction": kms.jurisdiction}
    if kms.provider != "local":
        return passed(f"the key-encryption key is held by the {kms.provider} KMS, not on this host", **evidence)
    if kms.kek_credential:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        evidence["systemd_credential"] = kms.kek_credential
        if directory and (Path(directory) / kms.kek_credential).is_file():
            return passed(f"the key-encryption key is the systemd credential {kms.kek_credential}", **evidence)
        return failed(f"keys.kms.kek_credential {kms.kek_credential} is set but no such credential is in "
                      f"$CREDENTIALS_DIRECTORY ({directory or 'unset'})", **evidence)
    path = Path(kms.kek_file) if kms.kek_file else Path(daemon.state_dir) / "keys" / "kek"
    facts = file_facts(path)
    evidence["kek_file"] = facts
    if not facts.get("exists"):
        return failed(f"the KEK file {path} does not exist", **evidence)
    if not facts.get("regular"):
        return failed(f"the KEK file {path} is not a regular file", **evidence)
    if others_may_read(path):
        return failed(f"the KEK file {path} has mode {facts['mode']}: group or others may read it (want 0600)",
                      **evidence)
    if facts["uid"] != os.geteuid():
        return failed(f"the KEK file {path} belongs to uid {facts['uid']}, not the daemon's uid {os.geteuid()}",
                      **evidence)
    return passed(f"the KEK file {path} has mode {facts['mode']}", **evidence)


CHECKS = [
    AuditCheck("rest.ledger_encrypted", "The metering ledger is encrypted at rest", Severity.HIGH, ledger_encrypted),
    AuditCheck("rest.invoices_encrypted", "The invoice store is encrypted at rest", Severity.HIGH,
               invoices_encrypted),
    AuditCheck("rest.config_secrets_encrypted", "Config secrets are encrypted; no plaintext password file",
               Severity.HIGH, config_secrets_encrypted),
    AuditCheck("rest.kek_protected", "The key-encryption key is protected (0600, systemd credential or KMS)",
               Severity.CRITICAL, kek_protected),
]
