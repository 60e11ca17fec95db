"""The ``deploy:`` section of a region's daemon config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from meshd.config import LoadedConfig, RelPath, StrictModel
from meshd.durations import Duration


class DeployConfig(StrictModel):
    """Where the pipeline file is and how this daemon takes part in rollouts."""

    pipeline: RelPath = Path("region_pipeline.yaml")
    """The pipeline file; a relative path is beside the config file. A missing default file: no rollouts."""
    bucket: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = "meshd_deploy"
    replicas: Annotated[int, Field(ge=1, le=5)] = 1
    """JetStream KV replicas of the rollout bucket: 3 on a production cluster."""
    tick: Annotated[Duration, Field(gt=0)] = 0.5
    """How often this daemon looks for rollout work (a step to apply, a check due)."""
    lease: Annotated[Duration, Field(gt=0)] = 10.0
    """A region's daemon holds its rollout's lease this long past each renewal; a peer takes over after."""


def pipeline_path(config: LoadedConfig) -> Path:
    path: Path = config.plugin("deploy").pipeline
    return path if path.is_absolute() else config.path.parent / path


def pipeline_named(config: LoadedConfig) -> bool:
    return "pipeline" in config.plugin("deploy").model_fields_set
