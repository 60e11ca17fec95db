"""The log-only copy of an alert routing file that ``meshd init`` writes.

The sample routing file shows real-looking receiver URLs (Slack, PagerDuty,
mail, a heartbeat), all placeholders. A federation started from a verbatim
copy would send to them, log every failure and pile up its outbox. So init
comments out every receiver's literal URLs, leaving ``urls: []`` (a receiver
without URLs logs its notifications), and keeps everything else, comments
included, so the operator fills in each placeholder where it was.
``{secret: NAME}`` references are kept: they are not placeholders but name
each region's own, possibly encrypted, URL.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

HEADER = """\
# Written by `meshd init` in LOG-ONLY mode: every receiver's literal `urls:` is commented out
# and replaced by `urls: []`, so alerts are logged, not sent. For each receiver, put a real URL
# (or {secret: NAME}, see docs/alerts.md) in place of the placeholder, uncomment it, remove
# the `urls: []` line, check with `meshd check-config`, then `meshd reload`.

"""

_URLS_KEY = re.compile(r"^(?P<lead>\s*(?:-\s+)?)urls\s*:")


def _literal(urls: Any) -> bool:
    return isinstance(urls, list) and any(isinstance(u, str) for u in urls)


def emptied(data: Any) -> Any:
    """The parsed routing file with the literal urls of every receiver emptied."""
    if not isinstance(data, dict) or not isinstance(data.get("receivers"), list):
        return data
    return {**data, "receivers": [{**r, "urls": []} if isinstance(r, dict) and _literal(r.get("urls")) else r
                                  for r in data["receivers"]]}


def has_literal_urls(text: str) -> bool:
    """Does the routing file ``text`` name a receiver URL outright (not through a secret)?"""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return False  # copied as it is: check-config names the problem with its line
    return bool(emptied(data) != data)


def _rewrite(block: list[str], column: int, lead: str) -> list[str]:
    """One receiver's ``urls:`` lines, commented out and emptied if they hold a literal URL."""
    try:
        value = yaml.safe_load("".join(line[column:] for line in block))
    except yaml.YAMLError:
        value = None
    if isinstance(value, dict) and not _literal(value.get("urls")):
        return block
    out = []
    for line in block:
        if not line.strip():
            out.append(line)
            continue
        indent = min(column, len(line) - len(line.lstrip()))
        out.append(" " * indent + "# " + line[indent:].rstrip("\n") + "\n")
    return out + [lead + "urls: []\n"]


def log_only_routes(text: str) -> str:
    """``text`` with each receiver's literal urls commented out and emptied, comments kept.

    If the file is laid out in a way the line rewrite cannot follow (receivers in
    flow style, say), the emptied file is written without its comments instead:
    the result always parses to :func:`emptied` of the original.
    """
    out: list[str] = []
    block: list[str] = []
    gap: list[str] = []  # blank and comment lines after a block: its own only if more of it follows
    column, lead = 0, ""
    in_receivers = False
    for line in text.splitlines(keepends=True):
        body = line.strip()
        indent = len(line) - len(line.lstrip())
        if block:
            if not body or body.startswith("#"):
                gap.append(line)
                continue
            # The rest of a urls value: a multi-line flow list, or block items (which YAML
            # allows at the key's own column).
            if indent > column or (indent == column and body.startswith("- ")):
                block += [*gap, line]
                gap = []
                continue
            out += _rewrite(block, column, lead) + gap
            block, gap = [], []
        if indent == 0 and body and not body.startswith("#"):
            in_receivers = body.startswith("receivers:")
        match = _URLS_KEY.match(line) if in_receivers else None
        if match:
            lead = match.group("lead")
            column, block = len(lead), [line]
            continue
        out.append(line)
    if block:
        out += _rewrite(block, column, lead) + gap
    expected = emptied(yaml.safe_load(text))
    rewritten = HEADER + "".join(out)
    try:
        if yaml.safe_load(rewritten) == expected:
            return rewritten
    except yaml.YAMLError:
        pass
    return HEADER + yaml.safe_dump(expected, sort_keys=False, allow_unicode=True)
