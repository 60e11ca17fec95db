"""Receiver URLs: which sender handles each one, its limits, its secret parts and a printable form.

``pagerduty://`` and ``opsgenie://`` URLs are written as apprise writes them,
but meshd sends them itself (PagerDuty Events API v2 with trigger *and*
resolve on the group's dedup key, Opsgenie create and close by alias, both
with a configurable base URL); so does ``alertmanager://`` (Prometheus
Alertmanager's v2 API, see :mod:`.alertmanager`). Every other scheme goes
through apprise.

A URL usually holds a token: it never appears in a log line or an error
message. :attr:`Target.redacted` is apprise's privacy form
(``slack://T...2/B...D/****``) and :attr:`Target.secret_parts` are
registered with the log scrubber.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, quote, unquote

from meshd.logs import MIN_SECRET_LENGTH

PAGERDUTY_SUMMARY_MAX = 1024
"""PagerDuty Events API v2: ``payload.summary`` is at most 1024 characters."""
OPSGENIE_MESSAGE_MAX = 130
OPSGENIE_DESCRIPTION_MAX = 15000
OPSGENIE_ALIAS_MAX = 512
PAGERDUTY_REGIONS = {"us": "https://events.pagerduty.com", "eu": "https://events.eu.pagerduty.com"}
OPSGENIE_REGIONS = {"us": "https://api.opsgenie.com", "eu": "https://api.eu.opsgenie.com"}
ALERTMANAGER_SCHEMES = {"alertmanager": "http", "alertmanagers": "https"}
ALERTMANAGER_PORT = 9093


class TargetError(ValueError):
    """A receiver URL meshd cannot send to; the message never contains the URL."""


@dataclass(frozen=True)
class Target:
    """One URL of a receiver, parsed."""

    index: int
    kind: Literal["pagerduty", "opsgenie", "alertmanager", "apprise"]
    scheme: str
    url: str = field(repr=False)
    redacted: str = ""
    title_limit: int = 250
    """0: the service has no title (it is folded into the body)."""
    body_limit: int = 32768
    key: str = field(default="", repr=False)
    """PagerDuty routing (integration) key, Opsgenie API key, or Alertmanager ``user:password``."""
    region: str = "us"
    source: str = ""
    component: str = ""
    secret_parts: tuple[str, ...] = field(default=(), repr=False)
    endpoint: str = field(default="", repr=False)
    """Where meshd posts, for the URLs it sends itself (Alertmanager's ``.../api/v2/alerts``)."""


def _split(url: str) -> tuple[str, str, list[str], dict[str, list[str]]]:
    """(scheme, netloc, path segments, query) without lowercasing anything (keys are case-sensitive)."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme:
        raise TargetError("not a notification URL: expected scheme://..., e.g. slack://, json://, pagerduty://")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    segments = [unquote(s) for s in path.split("/") if s]
    return scheme.lower(), netloc, segments, parse_qs(query)


def _redact(url: str, scheme: str, secrets: list[str], instance: Any = None) -> str:
    """apprise's privacy form (for apprise URLs), with every part meshd considers secret masked too."""
    shown = f"{scheme}://***"
    if instance is not None:
        try:
            shown = str(instance.url(privacy=True))
        except Exception:
            pass
    for part in sorted(set(secrets), key=len, reverse=True):
        if part and part != url:
            shown = shown.replace(part, "***")
    return shown


_SECRET_KEY = re.compile(r"token|key|secret|pass|pwd|auth|sig|webhook|hash|code", re.IGNORECASE)
"""Query parameters whose value is a credential whatever it looks like (``?token=``, ``?apikey=``...)."""


def _secret_parts(url: str, netloc: str, segments: list[str], query: dict[str, list[str]]) -> list[str]:
    """The pieces of a URL that are secrets, to mask in logs and printed forms.

    The password of ``user:password@``, token-like path segments, and query
    values that are credentials by name or look like tokens. Never the user
    name (``mailto://alerts:...`` must not mask every ``alerts`` in the logs),
    and nothing shorter than :data:`meshd.logs.MIN_SECRET_LENGTH`.
    """
    userinfo, at, _host = netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    parts = [unquote(password)] if at and colon else []
    parts += [s for s in segments if _token_like(s)]
    for key, values in query.items():
        named = _SECRET_KEY.search(key) is not None
        parts += [v for v in values if named or (_token_like(v) and "@" not in v)]
    return [url, *(p for p in parts if len(p) >= MIN_SECRET_LENGTH and p != unquote(user))]


def _apprise_private(instance: Any) -> list[str]:
    """The values apprise itself declares private for this service (tokens, passwords, keys)."""
    found: list[str] = []
    for table in (getattr(instance, "template_tokens", {}), getattr(instance, "template_args", {})):
        for name, meta in table.items():
            if not isinstance(meta, dict) or not meta.get("private"):
                continue
            value = getattr(instance, str(meta.get("map_to", name)), None)
            values = value if isinstance(value, (list, tuple, set)) else [value]
            found += [v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH]
    return found


def _token_like(text: str) -> bool:
    """Long, or mixing letters and digits: a token rather than a word like ``hooks`` or ``takeover``."""
    mixed = any(c.isdigit() for c in text) and any(c.isalpha() for c in text)
    return len(text) >= 20 or (len(text) >= 8 and mixed)


def parse_target(url: str, index: int = 0) -> Target:
    """Parse one receiver URL; raise :class:`TargetError` if no sender can use it."""
    scheme, netloc, segments, query = _split(url)
    secrets = _secret_parts(url, netloc, segments, query)
    region = (query.get("region") or ["us"])[0].lower()
    if scheme in ("pagerduty", "opsgenie"):
        user, at, host = netloc.rpartition("@")
        # Both halves are keys here: pagerduty://ROUTING_KEY@API_KEY, opsgenie://API_KEY.
        secrets += [p for p in (unquote(user), unquote(host)) if len(p) >= MIN_SECRET_LENGTH]
        if scheme == "pagerduty":
            key = unquote(user if at else host)
            if not key:
                raise TargetError("pagerduty:// needs an integration (routing) key: pagerduty://KEY@APIKEY")
            if region not in PAGERDUTY_REGIONS:
                raise TargetError(f"pagerduty:// region {region!r}: expected us or eu")
            return Target(index, "pagerduty", scheme, url, _redact(url, scheme, secrets), PAGERDUTY_SUMMARY_MAX, 32768, key,
                          region, segments[0] if segments else "", segments[1] if len(segments) > 1 else "",
                          tuple(dict.fromkeys(secrets)))
        key = unquote(host)
        if not key:
            raise TargetError("opsgenie:// needs an API key: opsgenie://APIKEY")
        if region not in OPSGENIE_REGIONS:
            raise TargetError(f"opsgenie:// region {region!r}: expected us or eu")
        return Target(index, "opsgenie", scheme, url, _redact(url, scheme, secrets), OPSGENIE_MESSAGE_MAX,
                      OPSGENIE_DESCRIPTION_MAX, key, region, secret_parts=tuple(dict.fromkeys(secrets)))
    if scheme in ALERTMANAGER_SCHEMES:
        return _alertmanager_target(url, index, scheme, netloc, segments, query, secrets)
    import apprise

    try:
        instance = apprise.Apprise.instantiate(url)
    except Exception:
        instance = None
    if instance is None:
        raise TargetError(f"apprise does not understand this {scheme}:// URL (unknown scheme, or a required "
                          "part is missing); see https://github.com/caronc/apprise/wiki")
    secrets += _apprise_private(instance)
    return Target(index, "apprise", scheme, url, _redact(url, scheme, secrets, instance), int(instance.title_maxlen),
                  int(instance.body_maxlen), secret_parts=tuple(dict.fromkeys(secrets)))


def _alertmanager_target(url: str, index: int, scheme: str, netloc: str, segments: list[str],
                         query: dict[str, list[str]], secrets: list[str]) -> Target:
    """``alertmanager[s]://[USER:PASSWORD@]HOST[:PORT][/PATH_PREFIX]``: one Alertmanager of a cluster."""
    userinfo, at, host = netloc.rpartition("@")
    if not host or host.startswith(":"):
        raise TargetError(f"{scheme}:// needs a host: {scheme}://HOST[:PORT][/PATH_PREFIX]")
    if query:
        raise TargetError(f"{scheme}:// takes no query parameters (credentials go before the host: USER:PASSWORD@)")
    _hostname, colon, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
    if colon and not port.isdigit():
        raise TargetError(f"{scheme}:// port {port!r} is not a number")
    if not colon:
        host = f"{host}:{ALERTMANAGER_PORT}"
    prefix = "".join(f"/{quote(s, safe='')}" for s in segments)
    endpoint = f"{ALERTMANAGER_SCHEMES[scheme]}://{host}{prefix}/api/v2/alerts"
    shown = f"{scheme}://{'***@' if at else ''}{host}{prefix}"
    return Target(index, "alertmanager", scheme, url, shown, 0, 32768, unquote(userinfo) if at else "",
                  secret_parts=tuple(dict.fromkeys(secrets)), endpoint=endpoint)
