"""The JavaScript SDK's own tests (`npm test` in sdk/js: node --test against a real local HTTP server)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

JS = Path(__file__).resolve().parents[2] / "sdk" / "js"


def npm() -> str:
    found = shutil.which("npm")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("npm is not installed: the JavaScript SDK's tests cannot run (.ci/run installs nodejs)")
        pytest.skip("npm is not installed")
    return found


def test_the_javascript_sdk_passes_its_tests() -> None:
    # No dependencies: nothing to install before the tests run.
    done = subprocess.run([npm(), "test", "--silent"], cwd=JS, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "NO_COLOR": "1"})
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-4000:]
    passed = re.search(r"^# pass (\d+)$", report, re.M)
    failed = re.search(r"^# fail (\d+)$", report, re.M)
    assert passed and failed, report[-2000:]
    assert int(failed.group(1)) == 0 and int(passed.group(1)) >= 14, report[-2000:]


def test_the_javascript_sdk_has_no_runtime_dependency() -> None:
    import json

    package = json.loads((JS / "package.json").read_text())
    assert not package.get("dependencies"), "the SDK promises to need nothing beyond Node's fetch"
    assert package["type"] == "module" and package["types"] == "./index.d.ts"
