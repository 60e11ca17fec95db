"""Packaging: every plugin package ships, every builtin loads through the entry-point group."""

from __future__ import annotations

import tomllib
from importlib.metadata import entry_points
from pathlib import Path

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
