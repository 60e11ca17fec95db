"""One log line per change of a condition, not one per check."""

from __future__ import annotations

import logging
from typing import Any


class StateLog:
    """Remembers the last value of each named condition and logs only when it changes."""

    def __init__(self, log: logging.Logger):
        self.log = log
        self._last: dict[str, str] = {}

    def assume(self, key: str, value: str) -> None:
        """The starting state of ``key``: not logged, only changes from it are."""
        self._last.setdefault(key, value)

    def set(self, key: str, value: str, message: str, *args: Any, level: int = logging.INFO) -> None:
        if self._last.get(key) != value:
            self._last[key] = value
            self.log.log(level, message, *args)
