"""contrib/prometheus/sla-rules.yml is valid and fires as its unit test says (promtool from Debian's prometheus)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parents[2] / "contrib" / "prometheus"
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None and os.environ.get("CI") != "true",
                                reason="promtool (Debian package prometheus) is not installed")


@pytest.mark.parametrize("args", [["check", "rules", "sla-rules.yml"], ["test", "rules", "sla-rules.test.yml"]])
def test_promtool_accepts_the_rules(args: list[str]) -> None:
    assert PROMTOOL is not None, "promtool is missing: .ci/run installs the Debian package prometheus"
    done = subprocess.run([PROMTOOL, *args], cwd=RULES, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_the_rules_use_meshds_windows_and_factors() -> None:
    from meshd_plugins.sla.burn import RULES as ENGINE_RULES
    from meshd_plugins.sla.burn import window_name

    text = (RULES / "sla-rules.yml").read_text()
    for rule in ENGINE_RULES:
        long, short = window_name(rule.long_ms).replace("24h", "1d").replace("72h", "3d"), window_name(rule.short_ms)
        assert f"rate{long} > ({rule.factor:g} * 0.001)" in text, rule
        assert f"rate{short} > ({rule.factor:g} * 0.001)" in text, rule
        assert f"rule: {rule.name}" in text
