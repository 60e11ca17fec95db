"""Fixtures of the deploy tests: a HAProxy lab per region (see rolloutlab.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .rolloutlab import Lab


@pytest.fixture
def labs(tmp_path: Path) -> Iterator[dict[str, Lab]]:
    """``labs[region]`` made on first use; all torn down at the end."""
    made: dict[str, Lab] = {}

    class Labs(dict[str, Lab]):
        def __missing__(self, region: str) -> Lab:
            made[region] = self[region] = Lab(tmp_path, region)
            return made[region]

    try:
        yield Labs()
    finally:
        for lab in made.values():
            lab.close()
