"""What every benchmark prints about the machine it ran on."""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from pathlib import Path
from types import ModuleType


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (what `nproc` alone does not say)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line() -> str:
    """One line naming the machine: cores, CPU model, load average, Python."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"nproc {os.cpu_count()}, {cpu_model()}, load average {load}, Python {platform.python_version()}"


def load_module(path: Path, name: str) -> ModuleType:
    """Another version of a module, from ``path`` (``git show REF:FILE``), as ``name``.

    ``name`` places it in its package (``meshd_plugins.routing._baseline_engine``), so its relative imports
    are this tree's modules: the same run can time an earlier version beside the current one.
    """
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
