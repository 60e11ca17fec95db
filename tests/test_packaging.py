"""Packaging: every plugin package ships, builtins load through the entry-point group, the wheel stands alone.

The wheel is built and installed into a fresh virtualenv, then imported and
run from outside the source tree: no module may import a test harness, and
none may read the source tree (its etc/ in particular).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from importlib.metadata import entry_points
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_every_plugin_package_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {
        "meshd_plugins." + ".".join(p.parent.relative_to(ROOT / "plugins").parts)
        for p in (ROOT / "plugins").rglob("__init__.py") if p.parent != ROOT / "plugins"
    }
    on_disk |= {"meshd." + ".".join(p.parent.relative_to(ROOT / "meshd").parts)
                for p in (ROOT / "meshd").rglob("*/__init__.py")}
    assert on_disk <= listed, f"add to [tool.setuptools] packages: {sorted(on_disk - listed)}"


def test_builtins_are_registered_in_the_same_entry_point_group_as_third_party_plugins() -> None:
    names = {ep.name: ep.value for ep in entry_points(group="meshd")}
    for builtin in ("health", "membership", "failover", "routing", "alerts", "keys", "metering"):
        assert names[builtin].startswith(f"meshd_plugins.{builtin}:")


def test_locales_ship_as_package_data() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "*/*.yaml" in data["meshd_locales"]


# ---------------------------------------------------------------- the built wheel, installed

HARNESSES = ("chaos_runner", "alerts_receiver", "metering_keyring", "benchlib", "pytest", "hypothesis")
"""Modules only tests and benchmarks may import (bench/ and the test tools)."""
SOURCE_DIRS = ("meshd", "plugins", "locales", "etc", "bench", "tests", "contrib")

INSTALLED_CHECK = r"""
import importlib, json, pkgutil, sys, tempfile
from pathlib import Path

source, harnesses = [Path(d) for d in json.loads(sys.argv[1])], sys.argv[2].split(",")

def in_source(path):
    path = Path(path).resolve()
    return any(path.is_relative_to(d) for d in source)
opened = []

def audit(event, args):
    if event == "open" and isinstance(args[0], (str, bytes)):
        opened.append(str(args[0] if isinstance(args[0], str) else args[0].decode()))

sys.addaudithook(audit)
names = []
for top in ("meshd", "meshd_plugins"):
    package = importlib.import_module(top)
    names.append(top)
    names += [m.name for m in pkgutil.walk_packages(package.__path__, top + ".")
              if not m.name.endswith(".__main__")]  # that one runs the CLI
for name in names:
    importlib.import_module(name)

from meshd.cli import main
from meshd.testing import default_regions_file

work = Path(tempfile.mkdtemp())
init = main(["init", "--federation", "wheel", "--regions", str(default_regions_file()), "--out", str(work / "fed")])
check = main(["check-config", str(work / "fed" / "eu-west-1.yaml")])
ours = ("meshd", "meshd_plugins", "meshd_samples", "meshd_locales")
print(json.dumps({
    "imported": names,
    "from_source_tree": sorted(n for n, m in sys.modules.items() if n.split(".")[0] in ours
                              and in_source(getattr(m, "__file__", None) or "/")),
    "harnesses_loaded": sorted(n for n in sys.modules if n.split(".")[0] in harnesses),
    "opened_in_source_tree": sorted({p for p in opened if in_source(p)}),
    "regions_file": str(default_regions_file()),
    "init": init, "check": check,
}))
"""


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel, a fresh venv's python with it installed); dependencies come from this environment."""
    tmp = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(tmp / "dist"), str(ROOT)], check=True, cwd=tmp,
                   timeout=240)
    wheel = next((tmp / "dist").glob("meshd-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", str(wheel)], check=True, cwd=tmp,
                   timeout=120)
    # Dependencies (pydantic, nats-py...) from this environment, after the venv's own packages:
    # the wheel's meshd is found first; this environment's editable meshd is never activated.
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return wheel, python


def test_the_wheel_ships_no_harness_and_its_samples(installed_wheel: tuple[Path, Path]) -> None:
    wheel, _ = installed_wheel
    with zipfile.ZipFile(wheel) as zf:
        files = zf.namelist()
        sources = {n: zf.read(n).decode() for n in files if n.endswith(".py")}
    assert "meshd_samples/region_map.yaml" in files and "meshd_samples/dr_config.yaml" in files
    assert any(n.startswith("meshd_locales/ar/") for n in files)
    stray = [n for n in files if n.split("/")[0] not in ("meshd", "meshd_plugins", "meshd_samples", "meshd_locales")
             and ".dist-info/" not in n]
    assert not stray, f"not a package of meshd: {stray}"
    harness_files = [n for n in files if n.startswith("meshd_plugins/") and Path(n).stem in ("testing", "chaos")]
    assert not harness_files, f"test harnesses inside a plugin package: {harness_files}"
    offenders = [(n, h) for n, text in sources.items() for h in HARNESSES
                 if f"import {h}" in text or f"from {h} " in text or f"from {h}." in text]
    assert not offenders, f"production modules importing a test harness: {offenders}"


def test_the_installed_wheel_imports_and_runs_without_the_source_tree(installed_wheel: tuple[Path, Path],
                                                                      tmp_path: Path) -> None:
    _, python = installed_wheel
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["MESHD_LANG"] = "en"
    # The source tree, but for the environment this test runs in (it may live inside the checkout).
    source = json.dumps([str(ROOT / d) for d in SOURCE_DIRS])
    proc = subprocess.run([str(python), "-c", INSTALLED_CHECK, source, ",".join(HARNESSES)], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "meshd_plugins.routing.engine" in report["imported"] and len(report["imported"]) > 50
    assert report["from_source_tree"] == [], "modules loaded from the source tree, not the wheel"
    assert report["harnesses_loaded"] == []
    assert report["opened_in_source_tree"] == [], "the installed package read files of the source tree"
    assert report["regions_file"].endswith("meshd_samples/region_map.yaml")
    assert (report["init"], report["check"]) == (0, 0)
