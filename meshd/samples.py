"""The sample federation files that ship with meshd (the source tree's ``etc/``, packaged as ``meshd_samples``).

``meshd demo`` and :class:`meshd.testing.LocalFederation` start from them
when no region map is given. They are read through the installed package,
never through a path relative to this file, so an installed wheel works
the same as a source checkout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PACKAGE = "meshd_samples"


def samples_dir() -> Path | None:
    """The directory holding the sample files, or None when they are not installed."""
    try:
        root = resources.files(PACKAGE)
    except ModuleNotFoundError:
        return None
    # Installed as plain files (wheel or editable), never zipped: a real directory.
    path = Path(str(root))
    return path if path.is_dir() else None


def sample_file(name: str) -> Path:
    """The sample file ``name`` (e.g. ``"dr_config.yaml"``); FileNotFoundError naming it when absent."""
    base = samples_dir()
    path = base / name if base is not None else None
    if path is None or not path.is_file():
        raise FileNotFoundError(f"sample file {name!r} is not installed (package {PACKAGE})")
    return path
