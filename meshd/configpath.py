"""Which daemon config a CLI command means when ``--config`` is not given.

In order: ``$MESHD_CONFIG``, then the one region config installed as
``/etc/meshd/<region>.yaml`` (where the systemd unit ``meshd@<region>``
reads it). That directory also holds the federation's shared files
(region map, trust bundle, alert routes...), so a region config is told
apart by its top-level ``region:`` naming the file's own stem.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

ENV_VAR = "MESHD_CONFIG"
SYSTEM_DIR = Path("/etc/meshd")


class ConfigNotFound(Exception):
    """No config to use: ``candidates`` is empty, or holds several to choose from."""

    def __init__(self, directory: Path, candidates: list[Path]):
        self.directory, self.candidates = directory, candidates
        super().__init__(f"{directory}: {len(candidates)} region config(s)")


def region_configs(directory: Path) -> list[Path]:
    """``<region>.yaml`` files in ``directory`` whose top-level ``region:`` is ``<region>``."""
    found = []
    try:
        paths = sorted(directory.glob("*.yaml"))
    except OSError:
        return []
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue  # unreadable to this user: not one it can use either
        if re.search(rf"^region:\s*['\"]?{re.escape(path.stem)}['\"]?\s*(#.*)?$", text, re.MULTILINE):
            found.append(path)
    return found


def find_config(given: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None,
                system_dir: Path | None = None) -> Path:
    """The config path to load; raise :class:`ConfigNotFound` when there is none or no single one."""
    if given:
        return Path(given)
    env = os.environ if environ is None else environ
    if env.get(ENV_VAR):
        return Path(env[ENV_VAR])
    directory = SYSTEM_DIR if system_dir is None else system_dir
    candidates = region_configs(directory)
    if len(candidates) != 1:
        raise ConfigNotFound(directory, candidates)
    return candidates[0]
