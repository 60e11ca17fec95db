"""Compliance frameworks as data: ``<dir>/<framework>.yaml`` maps each control to the checks that evidence it.

Loaded with meshd's config loader, so every problem names its file and line
(:class:`meshd.config.ConfigError`): a file that is not a framework we know,
a control without checks, a check id nobody offers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import Field

from meshd.config import ConfigError, ConfigIssue, StrictModel, validate_source
from meshd.samples import samples_dir
from meshd.yamlsource import Source, YamlError, load_yaml

from .catalog import FRAMEWORK_IDS

CheckId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")]


class ControlModel(StrictModel):
    id: Annotated[str, Field(min_length=1, max_length=40)]
    title: Annotated[str, Field(min_length=1)]
    checks: Annotated[list[CheckId], Field(min_length=1)]


class FrameworkModel(StrictModel):
    framework: str
    name: Annotated[str, Field(min_length=1)]
    version: str = ""
    controls: Annotated[list[ControlModel], Field(min_length=1)]


@dataclass(frozen=True)
class Control:
    id: str
    title: str
    checks: tuple[str, ...]


@dataclass(frozen=True)
class Framework:
    id: str
    name: str
    version: str
    controls: tuple[Control, ...]
    path: Path

    def check_ids(self) -> set[str]:
        return {c for control in self.controls for c in control.checks}


@dataclass(frozen=True)
class _Loaded:
    framework: Framework
    source: Source


def default_dir() -> Path:
    """The mappings shipped with meshd (etc/compliance, installed as meshd_samples/compliance)."""
    base = samples_dir()
    if base is None:
        raise FileNotFoundError("the compliance mappings are not installed (package meshd_samples)")
    return base / "compliance"


def _load_one(path: Path) -> _Loaded:
    try:
        source = load_yaml(path)
    except YamlError as exc:
        raise ConfigError([ConfigIssue(exc.path, (), exc.message, exc.line, code="yaml")]) from None
    model = validate_source(source, FrameworkModel)
    issues = []
    if model.framework not in FRAMEWORK_IDS:
        issues.append(ConfigIssue(path, ("framework",), f"unknown framework {model.framework!r}: expected one of "
                                  f"{', '.join(FRAMEWORK_IDS)}", source.line_of(("framework",))))
    elif model.framework != path.stem:
        issues.append(ConfigIssue(path, ("framework",), f"framework {model.framework!r} in a file named "
                                  f"{path.name!r}: name the file {model.framework}.yaml",
                                  source.line_of(("framework",))))
    seen: dict[str, int] = {}
    for i, control in enumerate(model.controls):
        if control.id in seen:
            issues.append(ConfigIssue(path, ("controls", i, "id"), f"control {control.id!r} is listed twice "
                                      f"(also controls[{seen[control.id]}])", source.line_of(("controls", i, "id"))))
        seen.setdefault(control.id, i)
    if issues:
        raise ConfigError(issues)
    framework = Framework(model.framework, model.name, model.version,
                          tuple(Control(c.id, c.title, tuple(dict.fromkeys(c.checks))) for c in model.controls), path)
    return _Loaded(framework, source)


def load_frameworks(directory: Path | None = None, known_checks: Iterable[str] | None = None
                    ) -> dict[str, Framework]:
    """Every ``*.yaml`` framework in ``directory`` (default: the shipped ones), in FRAMEWORK_IDS order.

    With ``known_checks``, a control naming a check outside it is an error at
    that check's line. Raises :class:`ConfigError` listing every problem.
    """
    directory = directory or default_dir()
    paths = sorted(directory.glob("*.yaml")) if directory.is_dir() else []
    if not paths:
        raise ConfigError([ConfigIssue(directory, (), "no framework mapping (*.yaml) in this directory")])
    issues: list[ConfigIssue] = []
    loaded: list[_Loaded] = []
    for path in paths:
        try:
            loaded.append(_load_one(path))
        except ConfigError as exc:
            issues.extend(exc.issues)
    if known_checks is not None:
        known = set(known_checks)
        for item in loaded:
            for i, control in enumerate(item.framework.controls):
                for j, check in enumerate(control.checks):
                    if check not in known:
                        keypath = ("controls", i, "checks", j)
                        issues.append(ConfigIssue(item.framework.path, keypath,
                                                  f"control {control.id}: no plugin offers check {check!r}",
                                                  item.source.line_of(keypath)))
    if issues:
        raise ConfigError(issues)
    by_id = {item.framework.id: item.framework for item in loaded}
    return {fid: by_id[fid] for fid in FRAMEWORK_IDS if fid in by_id}
