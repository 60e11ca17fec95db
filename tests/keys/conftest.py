"""Fixtures for the keys plugin's tests: key managers on a temp state dir."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from meshd_plugins.keys.manager import KeyManager
from meshd_plugins.keys.settings import KeysConfig


@pytest.fixture
def make_manager(tmp_path: Path) -> Callable[..., KeyManager]:
    """``make_manager(region="eu-west-1", state="state", clock=None, on_rotated=None, **keys_settings)``."""

    def make(region: str = "eu-west-1", state: str = "state", clock: Any = None, on_rotated: Any = None,
             **settings: Any) -> KeyManager:
        kwargs: dict[str, Any] = {"on_rotated": on_rotated}
        if clock is not None:
            kwargs["clock"] = clock
        return KeyManager(region=region, state_dir=tmp_path / state, cfg=KeysConfig(**settings), **kwargs)

    return make
