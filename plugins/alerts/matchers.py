"""Label matchers as Alertmanager writes them: ``name="value"``, ``name!="v"``, ``name=~"re"``, ``name!~"re"``.

Used by routes, inhibit rules and silences. Regular expressions are anchored
(``severity=~"crit.*"`` must match the whole value), as in Alertmanager, and
a label that is absent matches as the empty string.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import BeforeValidator

LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$", re.S)


class MatcherError(ValueError):
    """A matcher string that cannot be parsed; the message says why."""


@dataclass(frozen=True)
class Matcher:
    """One label condition."""

    name: str
    op: str
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """``alertname="RegionDown"`` (quotes optional) -> Matcher; :class:`MatcherError` if malformed."""
        if not isinstance(text, str):
            raise MatcherError("a matcher is a string such as 'severity=\"critical\"'")
        m = _MATCHER.match(text)
        if not m:
            raise MatcherError(f"{text!r} is not a matcher; write name=\"value\", name!=\"value\", "
                               "name=~\"regex\" or name!~\"regex\"")
        name, op, raw = m.groups()
        value = _unquote(raw, text)
        regex = None
        if op in ("=~", "!~"):
            try:
                regex = re.compile(f"(?:{value})\\Z", re.S)
            except re.error as exc:
                raise MatcherError(f"{text!r}: bad regular expression: {exc}") from None
        return cls(name, op, value, regex)

    def matches(self, labels: Mapping[str, str]) -> bool:
        got = labels.get(self.name, "")
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        assert self._regex is not None
        hit = self._regex.match(got) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f"{self.name}{self.op}{json.dumps(self.value, ensure_ascii=False)}"

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "op": self.op, "value": self.value}


def _unquote(raw: str, text: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        if raw[0] == '"':
            try:
                value = json.loads(raw)
            except ValueError:
                raise MatcherError(f"{text!r}: bad quoting in the value") from None
            return str(value)
        return raw[1:-1]
    if raw[:1] in "\"'" or raw[-1:] in "\"'":
        raise MatcherError(f"{text!r}: unbalanced quotes in the value")
    return raw


def parse_matchers(texts: Iterable[str]) -> tuple[Matcher, ...]:
    return tuple(Matcher.parse(t) for t in texts)


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def _as_matcher(value: object) -> Matcher:
    if isinstance(value, Matcher):
        return value
    return Matcher.parse(value)  # type: ignore[arg-type]


MatcherField = Annotated[Matcher, BeforeValidator(_as_matcher)]
"""A pydantic field holding a matcher written as a string; bad ones are errors at their key path."""
