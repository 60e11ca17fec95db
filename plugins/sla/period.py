"""Periods for ``meshd sla``: a calendar month (``2026-10``) or a rolling window ending now (``28d``, ``30d``, ``90d``)."""

from __future__ import annotations

import re
from calendar import monthrange
from datetime import UTC, datetime

from meshd.durations import parse_duration


class BadPeriod(ValueError):
    pass


_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def parse_period(text: str, now_s: float) -> tuple[int, int]:
    """[start, end) in epoch ms."""
    text = text.strip()
    m = _MONTH.match(text)
    if m:
        year, month = int(m.group(1)), int(m.group(2))
        if not 1 <= month <= 12:
            raise BadPeriod(f"period {text!r}: month {month} is not 01 to 12")
        start = datetime(year, month, 1, tzinfo=UTC)
        days = monthrange(year, month)[1]
        return int(start.timestamp() * 1000), int(start.timestamp() * 1000) + days * 86_400_000
    try:
        seconds = parse_duration(text)
    except ValueError:
        raise BadPeriod(f"period {text!r}: write YYYY-MM (a calendar month, UTC) or a rolling window "
                        "such as 28d or 30d") from None
    if seconds <= 0:
        raise BadPeriod(f"period {text!r}: a rolling window needs a positive length")
    end = int(now_s * 1000)
    return end - int(seconds * 1000), end
