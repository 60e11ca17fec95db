"""The names ``meshd`` re-exports: every one reachable, none loaded before it is asked for."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

import meshd


@pytest.mark.parametrize("name", sorted(set(meshd.__all__) - {"__version__"}))
def test_every_exported_name_is_the_object_its_module_defines(name: str) -> None:
    value = getattr(meshd, name)
    defined_in = importlib.import_module(f"meshd.{meshd._SUBMODULE_OF[name]}")
    assert value is getattr(defined_in, name)
    assert name in dir(meshd)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        meshd.no_such_name  # noqa: B018


def test_import_meshd_loads_no_submodule_until_a_name_is_used() -> None:
    code = ("import json, sys\nimport meshd\nbefore = sorted(m for m in sys.modules if m.startswith('meshd.'))\n"
            "from meshd import Envelope\n"
            "after = sorted(m for m in sys.modules if m.startswith('meshd.'))\n"
            "print(json.dumps([before, after, meshd.__version__]))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    before, after, version = json.loads(done.stdout)
    assert before == []
    assert "meshd.envelope" in after and "meshd.daemon" not in after
    assert version == meshd.__version__
