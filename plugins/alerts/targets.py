"""Receiver URLs: which sender handles each one, its limits, its secret parts and a printable form.

``pagerduty://`` and ``opsgenie://`` URLs are written as apprise writes them,
but meshd sends them itself (PagerDuty Events API v2 with trigger *and*
resolve on the group's dedup key, Opsgenie create and close by alias, both
with a configurable base URL); every other scheme goes through apprise.

A URL usually holds a token: it never appears in a log line or an error
message. :attr:`Target.redacted` is apprise's privacy form
(``slack://T...2/B...D/****``) and :attr:`Target.secret_parts` are
registered with the log scrubber.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, unquote

PAGERDUTY_SUMMARY_MAX = 1024
"""PagerDuty Events API v2: ``payload.summary`` is at most 1024 characters."""
OPSGENIE_MESSAGE_MAX = 130
OPSGENIE_DESCRIPTION_MAX = 15000
OPSGENIE_ALIAS_MAX = 512
PAGERDUTY_REGIONS = {"us": "https://events.pagerduty.com", "eu": "https://events.eu.pagerduty.com"}
OPSGENIE_REGIONS = {"us": "https://api.opsgenie.com", "eu": "https://api.eu.opsgenie.com"}


class TargetError(ValueError):
    """A receiver URL meshd cannot send to; the message never contains the URL."""


@dataclass(frozen=True)
class Target:
    """One URL of a receiver, parsed."""

    index: int
    kind: Literal["pagerduty", "opsgenie", "apprise"]
    scheme: str
    url: str = field(repr=False)
    redacted: str = ""
    title_limit: int = 250
    """0: the service has no title (it is folded into the body)."""
    body_limit: int = 32768
    key: str = field(default="", repr=False)
    """PagerDuty routing (integration) key, or Opsgenie API key."""
    region: str = "us"
    source: str = ""
    component: str = ""
    secret_parts: tuple[str, ...] = field(default=(), repr=False)


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


def _secret_parts(url: str, netloc: str, segments: list[str], query: dict[str, list[str]]) -> list[str]:
    """The pieces of a URL that may be tokens, to mask in logs and printed forms.

    Credentials, token-like path segments and query values always; the host only
    when it does not look like a host name (``slack://TokenA/...``,
    ``pagerduty://KEY@APIKEY``).
    """
    userinfo, at, host = netloc.rpartition("@")
    parts = [url, *[p for p in userinfo.split(":") if len(p) >= 6]] if at else [url]
    hostname = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if len(hostname) >= 6 and "." not in hostname and hostname != "localhost":
        parts.append(unquote(hostname))
    parts += [s for s in segments if _token_like(s)]
    parts += [v for values in query.values() for v in values if _token_like(v)]
    return parts


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
        if scheme == "pagerduty":
            key = unquote(user if at else host)
            if not key:
                raise TargetError("pagerduty:// needs an integration (routing) key: pagerduty://KEY@APIKEY")
            if region not in PAGERDUTY_REGIONS:
                raise TargetError(f"pagerduty:// region {region!r}: expected us or eu")
            return Target(index, "pagerduty", scheme, url, _redact(url, scheme, secrets), PAGERDUTY_SUMMARY_MAX, 32768, key,
                          region, segments[0] if segments else "", segments[1] if len(segments) > 1 else "",
                          tuple(secrets))
        key = unquote(host)
        if not key:
            raise TargetError("opsgenie:// needs an API key: opsgenie://APIKEY")
        if region not in OPSGENIE_REGIONS:
            raise TargetError(f"opsgenie:// region {region!r}: expected us or eu")
        return Target(index, "opsgenie", scheme, url, _redact(url, scheme, secrets), OPSGENIE_MESSAGE_MAX,
                      OPSGENIE_DESCRIPTION_MAX, key, region, secret_parts=tuple(secrets))
    import apprise

    try:
        instance = apprise.Apprise.instantiate(url)
    except Exception:
        instance = None
    if instance is None:
        raise TargetError(f"apprise does not understand this {scheme}:// URL (unknown scheme, or a required "
                          "part is missing); see https://github.com/caronc/apprise/wiki")
    password = getattr(instance, "password", None)
    if isinstance(password, str) and len(password) >= 6:
        secrets.append(password)
    return Target(index, "apprise", scheme, url, _redact(url, scheme, secrets, instance), int(instance.title_maxlen),
                  int(instance.body_maxlen), secret_parts=tuple(secrets))
