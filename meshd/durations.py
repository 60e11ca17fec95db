"""Durations and sizes as operators write them: ``500ms``, ``2s``, ``90d``, ``64KiB``."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, None: 1.0}

_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "KB": 1000, "KiB": 1024, "MB": 1000**2, "MiB": 1024**2, "GB": 1000**3, "GiB": 1024**3}


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string such as ``250ms``, ``1.5s``, ``90d``."""
    if isinstance(value, bool):
        raise ValueError("a duration, such as 500ms, 2s, 5m, 1h or 90d")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration; write e.g. 500ms, 2s, 5m, 1h or 90d")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def parse_size(value: Any) -> int:
    """Bytes from an integer or a string such as ``64KiB`` or ``1MB``."""
    if isinstance(value, bool):
        raise ValueError("a size, such as 65536, 64KiB or 1MiB")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        size = int(m.group(1)) * _SIZE_UNITS[m.group(2)]
    else:
        raise ValueError(f"{value!r} is not a size; write e.g. 65536, 64KiB or 1MiB")
    if size < 0:
        raise ValueError("a size cannot be negative")
    return size


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, written in config as a number or ``500ms`` / ``2s`` / ``5m`` / ``1h`` / ``90d``."""

Size = Annotated[int, BeforeValidator(parse_size)]
"""Bytes, written in config as an integer or ``64KiB`` / ``1MiB``."""
