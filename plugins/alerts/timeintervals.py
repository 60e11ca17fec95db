"""Alertmanager's time intervals: when a route is muted (``mute_time_intervals``) or active (``active_time_intervals``).

A named interval is a list of specs; it holds at an instant when any spec
does. A spec holds when every field it sets holds (an unset field always
does)::

    - times: [{start_time: "09:00", end_time: "17:00"}]   # [start, end), 24:00 allowed as an end
      weekdays: ["monday:friday", "sunday"]
      days_of_month: ["1:5", "-3:-1"]                       # negative: from the end of the month
      months: ["january:march", "12"]
      years: ["2026:2027"]
      location: Europe/Berlin                               # IANA zone; UTC by default
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator, Field

from meshd.config import StrictModel

WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september",
          "october", "november", "december"]
_TIME = re.compile(r"^(\d{2}):(\d{2})$")


def _minutes(value: Any) -> int:
    if not isinstance(value, str) or not (m := _TIME.match(value)):
        raise ValueError(f"{value!r} is not a time of day; write HH:MM, e.g. 09:30")
    hours, minutes = int(m.group(1)), int(m.group(2))
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise ValueError(f"{value!r} is not a time of day between 00:00 and 24:00")
    return hours * 60 + minutes


def _named_or_number(names: list[str], low: int, high: int, what: str) -> Callable[[Any], tuple[int, int]]:
    """A validator for ``value`` or ``first:last`` where each is a number in [low, high] or one of ``names``."""
    def one(token: str) -> int:
        token = token.strip().lower()
        if token in names:
            return names.index(token) + 1
        try:
            n = int(token)
        except ValueError:
            raise ValueError(f"{token!r} is not a {what}") from None
        if not low <= n <= high:
            raise ValueError(f"{n} is not a {what} ({low}..{high})")
        return n

    def parse(value: Any) -> tuple[int, int]:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"a {what} or a range of them, e.g. '{names[0] if names else low}:{names[-1] if names else high}'")
        start, sep, end = value.partition(":")
        first = one(start)
        last = one(end) if sep else first
        if first > last:
            raise ValueError(f"{value!r}: the range ends before it starts")
        return first, last

    return parse


class TimeRange(StrictModel):
    start_time: Annotated[int, BeforeValidator(_minutes)]
    end_time: Annotated[int, BeforeValidator(_minutes)]

    def model_post_init(self, _context: Any) -> None:
        if self.end_time <= self.start_time:
            raise ValueError("end_time must be after start_time (use two ranges to cross midnight)")


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not a time zone name such as Europe/Berlin or UTC") from None
    return value


def _weekday_range(value: Any) -> tuple[int, int]:
    if not isinstance(value, str):
        raise ValueError("a weekday or a range, e.g. 'monday:friday'")
    start, sep, end = value.lower().partition(":")
    for token in (start, end) if sep else (start,):
        if token.strip() not in WEEKDAYS:
            raise ValueError(f"{token.strip()!r} is not a weekday (monday..sunday)")
    first = WEEKDAYS.index(start.strip())
    last = WEEKDAYS.index(end.strip()) if sep else first
    if first > last:
        raise ValueError(f"{value!r}: the range ends before it starts")
    return first, last


def _day_range(value: Any) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError("a day of the month or a range, e.g. '1:5' or '-3:-1'")
    start, sep, end = value.partition(":")
    try:
        first = int(start)
        last = int(end) if sep else first
    except ValueError:
        raise ValueError(f"{value!r} is not a day of the month or a range such as '1:5' or '-3:-1'") from None
    for n in (first, last):
        if n == 0 or not -31 <= n <= 31:
            raise ValueError(f"{n} is not a day of the month (1..31, or -31..-1 from the end)")
    if (first > 0) == (last > 0) and first > last:
        raise ValueError(f"{value!r}: the range ends before it starts")
    return first, last


class TimeSpec(StrictModel):
    """One spec of a time interval; every field set must hold."""

    times: list[TimeRange] | None = None
    weekdays: list[Annotated[tuple[int, int], BeforeValidator(_weekday_range)]] | None = None
    days_of_month: list[Annotated[tuple[int, int], BeforeValidator(_day_range)]] | None = None
    months: list[Annotated[tuple[int, int], BeforeValidator(_named_or_number(MONTHS, 1, 12, "month"))]] | None = None
    years: list[Annotated[tuple[int, int], BeforeValidator(_named_or_number([], 1970, 9999, "year"))]] | None = None
    location: Annotated[str, AfterValidator(_zone)] = "UTC"

    def contains(self, instant: datetime) -> bool:
        """Does this spec hold at ``instant`` (an aware datetime)?"""
        local = instant.astimezone(ZoneInfo(self.location))
        if self.times is not None:
            minute = local.hour * 60 + local.minute
            if not any(r.start_time <= minute < r.end_time for r in self.times):
                return False
        if self.weekdays is not None and not any(a <= local.weekday() <= b for a, b in self.weekdays):
            return False
        if self.days_of_month is not None:
            days = calendar.monthrange(local.year, local.month)[1]

            def absolute(n: int) -> int:
                return n if n > 0 else days + 1 + n

            if not any(absolute(a) <= local.day <= absolute(b) for a, b in self.days_of_month):
                return False
        if self.months is not None and not any(a <= local.month <= b for a, b in self.months):
            return False
        if self.years is not None and not any(a <= local.year <= b for a, b in self.years):
            return False
        return True


class TimeInterval(StrictModel):
    """A named interval: it holds when any of its specs holds."""

    name: Annotated[str, Field(min_length=1)]
    time_intervals: list[TimeSpec] = Field(min_length=1)

    def contains(self, instant: datetime) -> bool:
        return any(spec.contains(instant) for spec in self.time_intervals)


def utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)
