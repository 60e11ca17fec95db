"""Durations and sizes as operators write them: ``500ms``, ``1h30m``, ``2d``, ``64KiB``.

Durations follow Prometheus and Alertmanager: one or more ``<number><unit>``
parts from the largest unit to the smallest, each unit at most once
(``1w2d``, ``1m30s``, ``1s500ms``), so a value copied from an
``alertmanager.yml`` means the same here. A bare number is seconds.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator

_UNITS_MS = {"y": 365 * 86_400_000, "w": 604_800_000, "d": 86_400_000, "h": 3_600_000, "m": 60_000,
             "s": 1000, "ms": 1}
"""Milliseconds per unit, largest first (a year is 365 days, as in Prometheus)."""
_ORDER = list(_UNITS_MS)
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|y|w|d|h|m|s)")
_BARE = re.compile(r"\d+(?:\.\d+)?")
_EXAMPLES = "500ms, 2s, 1m30s, 1h30m, 2d or 1w"

_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "KB": 1000, "KiB": 1024, "MB": 1000**2, "MiB": 1024**2, "GB": 1000**3, "GiB": 1024**3}


def _parse_text(text: str) -> float:
    compact = text.strip()
    if _BARE.fullmatch(compact):
        return float(compact)
    compact = re.sub(r"\s+", "", compact)
    total, last, pos = Decimal(0), -1, 0
    for m in _PART.finditer(compact):
        if m.start() != pos:
            break
        rank = _ORDER.index(m.group(2))
        if rank <= last:
            raise ValueError(f"{text!r}: units go from the largest to the smallest, each once "
                             f"(y, w, d, h, m, s, ms); write e.g. {_EXAMPLES}")
        last, pos = rank, m.end()
        total += Decimal(m.group(1)) * _UNITS_MS[m.group(2)]
    if pos == 0 or pos != len(compact):
        raise ValueError(f"{text!r} is not a duration; write e.g. {_EXAMPLES}")
    # Summed exactly, then rounded once: "1h30m" is exactly 5400.0 and format_duration round-trips.
    return float(total / 1000)


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string such as ``250ms``, ``1.5s``, ``1h30m`` or ``2d``."""
    if isinstance(value, bool):
        raise ValueError(f"a duration, such as {_EXAMPLES}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_text(value)
    else:
        raise ValueError(f"{value!r} is not a duration; write e.g. {_EXAMPLES}")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if seconds != seconds or seconds == float("inf"):
        raise ValueError(f"{value!r} is not a finite duration")
    return seconds


def format_duration(seconds: float) -> str:
    """The compact form of ``seconds`` that :func:`parse_duration` reads back (``5400`` -> ``1h30m``).

    Rounded to the millisecond; years are left out (a year is not a calendar year), so the
    largest unit is the week.
    """
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"{seconds!r} is not a duration")
    left = round(seconds * 1000)
    if left == 0:
        return "0s"
    parts = []
    for unit in _ORDER[1:]:
        count, left = divmod(left, _UNITS_MS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


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
"""Seconds, written in config as a number or ``500ms`` / ``2s`` / ``1m30s`` / ``1h30m`` / ``2d`` / ``1w``."""

Size = Annotated[int, BeforeValidator(parse_size)]
"""Bytes, written in config as an integer or ``64KiB`` / ``1MiB``."""
