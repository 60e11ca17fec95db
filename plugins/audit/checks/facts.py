"""What the checks share: reaching other plugins, file modes, NATS and redaction.

Checks read other plugins only through their public objects (the plugin
instance, its config section, files in the state directory); a plugin that
is not loaded makes its checks "not applicable", never failed.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from meshd.auditcheck import CheckResult
from meshd.logs import scrub

if TYPE_CHECKING:
    from meshd.daemon import Daemon


def passed(detail: str, **evidence: Any) -> CheckResult:
    return CheckResult("pass", scrub(detail), evidence)


def failed(detail: str, **evidence: Any) -> CheckResult:
    return CheckResult("fail", scrub(detail), evidence)


def not_applicable(reason: str, **evidence: Any) -> CheckResult:
    return CheckResult("not_applicable", scrub(reason), evidence)


def plugin(daemon: Daemon, name: str) -> Any:
    """The loaded plugin object ``name``, or None when it is not loaded (blocked, disabled, not installed)."""
    return daemon.hooks.pm.get_plugin(name)


def section(daemon: Daemon, name: str) -> Any:
    """Plugin ``name``'s validated config section, or None when the plugin declares none."""
    try:
        return daemon.config.plugin(name)
    except KeyError:
        return None


def mode_of(path: Path) -> int | None:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None


def file_facts(path: Path) -> dict[str, Any]:
    """Mode, owner and kind of ``path`` (never its content)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return {"path": str(path), "exists": False}
    except OSError as exc:
        return {"path": str(path), "exists": None, "error": exc.strerror or str(exc)}
    return {"path": str(path), "exists": True, "mode": f"{stat.S_IMODE(st.st_mode):04o}", "uid": st.st_uid,
            "regular": stat.S_ISREG(st.st_mode), "directory": stat.S_ISDIR(st.st_mode)}


def others_may_read(path: Path) -> bool:
    mode = mode_of(path)
    return mode is not None and bool(mode & 0o077)


def redact_url(url: str) -> str:
    """``url`` without the password (or token) of its userinfo."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.password is not None else "***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


_SECRET_KEY = re.compile(r"(password|passwd|secret|token|api_?key|credential|private)", re.IGNORECASE)


NOT_SECRETS = frozenset({"private_key", "trust_bundle", "secrets"})
"""Settings whose names sound secret but hold paths (or a map checked entry by entry)."""


def secret_key(name: str) -> bool:
    """Does a config key of this name hold a secret (password, token, api_key...)?"""
    if name in NOT_SECRETS or name.endswith(("_file", "_credential", "_bucket", "_dir")):
        return False
    return bool(_SECRET_KEY.search(name))


def jurisdiction_of(daemon: Daemon, region: str) -> str | None:
    entry = daemon.config.region_map.regions.get(region)
    return entry.jurisdiction if entry is not None else None


def jurisdictions(daemon: Daemon) -> dict[str, str]:
    return {name: r.jurisdiction for name, r in daemon.config.region_map.regions.items()}


def nats_client(daemon: Daemon) -> Any:
    """The daemon's live nats-py client, or None when its transport is not NATS."""
    try:
        return daemon.transport.nc  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):
        return None


def plain_mapping(value: Any) -> Any:
    """A JSON-able copy of config data (paths as strings)."""
    if isinstance(value, Mapping):
        return {str(k): plain_mapping(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_mapping(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value
