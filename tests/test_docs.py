"""Documentation that must keep up with the code."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from meshd import hookspecs

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "plugin-guide.md"
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("meshd_"))


def test_there_are_hooks() -> None:
    assert len(HOOKS) >= 20


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_docstring(hook: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert len(doc) > 40, f"{hook} needs a docstring saying when it fires and what it returns"


def undocumented(hooks: list[str], guide: str) -> list[str]:
    """The hooks without a heading of their own in the plugin guide's text."""
    headings = set(re.findall(r"^#+\s+(meshd_\w+)\s*$", guide, re.M))
    return [hook for hook in hooks if hook not in headings]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_in_the_plugin_guide(hook: str) -> None:
    assert undocumented([hook], GUIDE.read_text()) == [], f"{hook} has no heading in {GUIDE.relative_to(ROOT)}"


def test_an_undocumented_hook_is_caught() -> None:
    guide = GUIDE.read_text()
    assert undocumented([*HOOKS, "meshd_not_in_the_guide"], guide) == ["meshd_not_in_the_guide"]
    without = re.sub(r"^#### meshd_failover_vote$", "#### (removed)", guide, flags=re.M)
    assert undocumented(HOOKS, without) == ["meshd_failover_vote"]
    mentioned_only = without + "\nSee `meshd_failover_vote` elsewhere.\n"  # a mention is not a section
    assert undocumented(HOOKS, mentioned_only) == ["meshd_failover_vote"]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_typed(hook: str) -> None:
    sig = inspect.signature(getattr(hookspecs, hook))
    assert sig.return_annotation is not inspect.Signature.empty
    for param in sig.parameters.values():
        assert param.annotation is not inspect.Parameter.empty, f"{hook}({param.name}) is untyped"


def test_guide_names_no_hook_that_does_not_exist() -> None:
    named = set(re.findall(r"^#+\s+(meshd_\w+)\s*$", GUIDE.read_text(), re.M))
    assert named <= set(HOOKS), f"documented but not in hookspecs: {sorted(named - set(HOOKS))}"
