"""Loading the billing files (tax rates, billing matrix, FX rates) with file:line errors.

Each file is parsed by :mod:`meshd.yamlsource` (which keeps the line of
every key) and validated by its pydantic model; the cross-checks pydantic
cannot do (a source that is not declared, a plan price in a currency that
is missing) come back as :class:`~meshd.config.ConfigIssue` located the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from meshd.config import ConfigError, ConfigIssue, validate_source
from meshd.yamlsource import KeyPath, Source, YamlError, load_yaml

M = TypeVar("M", bound=BaseModel)

Check = Callable[[M, Callable[[KeyPath, str], None]], None]


def load_checked(path: Path, model: type[M], check: Check[M] | None = None) -> tuple[M | None, list[ConfigIssue]]:
    """``path`` validated by ``model`` then by ``check(value, issue)``; the value (None if unusable) and its issues."""
    try:
        source = load_yaml(path)
    except YamlError as exc:
        return None, [ConfigIssue(exc.path, (), exc.message, exc.line, code="yaml")]
    try:
        value = validate_source(source, model)
    except ConfigError as exc:
        return None, exc.issues
    issues: list[ConfigIssue] = []
    if check is not None:
        check(value, _reporter(source, issues))
    return (value if not issues else None), issues


def _reporter(source: Source, issues: list[ConfigIssue]) -> Callable[[KeyPath, str], None]:
    def issue(keypath: KeyPath, message: str) -> None:
        issues.append(ConfigIssue(source.path, keypath, message, source.line_of(keypath), code="billing"))
    return issue


def load_or_raise(path: Path, model: type[M], check: Check[M] | None = None) -> M:
    """Like :func:`load_checked`, raising :class:`ConfigError` with every issue."""
    value, issues = load_checked(path, model, check)
    if issues or value is None:
        raise ConfigError(issues)
    return value
