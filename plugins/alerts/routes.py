"""The routing file (``alert_routes.yaml``): an Alertmanager-shaped routing tree, receivers, inhibit rules, time intervals.

:func:`load_routes` reads and checks it and returns a :class:`RoutingTree`;
every problem is a :class:`meshd.ConfigIssue` naming the file, the line and
the key path of the route at fault (``route.routes[1].receiver: unknown
receiver 'pager'``), and all of them are reported at once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from meshd.config import ConfigError, ConfigIssue, Secret, StrictModel, validate_source
from meshd.durations import Duration
from meshd.i18n import LANGUAGES
from meshd.yamlsource import KeyPath, Source, YamlError, load_yaml

from .matchers import LABEL_NAME, Matcher, MatcherField, matches_all
from .targets import TargetError, parse_target
from .timeintervals import TimeInterval

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
HTTP_URL = r"^https?://[^\s/]+(/\S*)?$"
Lang = Literal["en", "fr", "es", "de", "ar"]
assert set(Lang.__args__) == set(LANGUAGES)  # type: ignore[attr-defined]

DEFAULT_GROUP_WAIT = 30.0
DEFAULT_GROUP_INTERVAL = 300.0
DEFAULT_REPEAT_INTERVAL = 4 * 3600.0


def _label_name(value: str) -> str:
    if value != "..." and not LABEL_NAME.match(value):
        raise ValueError(f"{value!r} is not a label name (letters, digits and _, not starting with a digit)")
    return value


LabelName = Annotated[str, AfterValidator(_label_name)]


# ---------------------------------------------------------------- the file's models


class GlobalSettings(StrictModel):
    """Defaults every receiver inherits."""

    lang: Lang = "en"
    send_resolved: bool = True
    timeout: Annotated[Duration, Field(gt=0)] = 10.0
    """The hard deadline of one delivery attempt to one URL."""
    pagerduty_url: Annotated[str, Field(pattern=HTTP_URL)] = "https://events.pagerduty.com"
    """Base URL of the PagerDuty Events API v2 (``/v2/enqueue`` is appended)."""
    opsgenie_api_url: Annotated[str, Field(pattern=HTTP_URL)] = "https://api.opsgenie.com"
    """Base URL of the Opsgenie Alert API (``/v2/alerts`` is appended); EU: https://api.eu.opsgenie.com."""
    resolve_timeout: Duration = 0.0
    """Resolve an alert nobody refreshed for this long; 0: alerts stay until their plugin resolves them."""


class SecretRef(StrictModel):
    """``{secret: NAME}`` in a receiver's urls: the URL is ``alerts.secrets.NAME`` of each region's own config.

    The routing file is shared by every region, but an ``!encrypted`` value
    decrypts only in the region whose keyring made it; so tokens live in
    each region's config, encrypted for that region, under a common name.
    """

    secret: Annotated[str, Field(pattern=NAME)]


class ReceiverModel(StrictModel):
    """Where notifications go: apprise URLs, plus meshd's own PagerDuty and Opsgenie senders."""

    name: Annotated[str, Field(pattern=NAME)]
    urls: list[SecretRef | Secret] = Field(default_factory=list)
    """slack://, mailto://, json://, pagerduty://, opsgenie://, alertmanager://..., or ``{secret: NAME}``. None: log only."""
    lang: Lang | None = None
    send_resolved: bool | None = None
    timeout: Annotated[Duration, Field(gt=0)] | None = None
    pagerduty_url: Annotated[str, Field(pattern=HTTP_URL)] | None = None
    opsgenie_api_url: Annotated[str, Field(pattern=HTTP_URL)] | None = None
    max_alerts: Annotated[int, Field(ge=1, le=1000)] = 10
    """Alerts listed one by one in a notification; the rest are counted ("and 12 more")."""
    max_title: Annotated[int, Field(ge=16)] | None = None
    """Override the title limit meshd knows for the service (e.g. PagerDuty's 1024-character summary)."""
    max_body: Annotated[int, Field(ge=64)] | None = None


class RouteModel(StrictModel):
    """One node of the routing tree; unset settings are inherited from the parent."""

    receiver: str | None = None
    matchers: list[MatcherField] = Field(default_factory=list)
    continue_: bool = Field(default=False, alias="continue")
    group_by: list[LabelName] | None = None
    group_wait: Duration | None = None
    group_interval: Annotated[Duration, Field(gt=0)] | None = None
    repeat_interval: Annotated[Duration, Field(gt=0)] | None = None
    mute_time_intervals: list[str] = Field(default_factory=list)
    active_time_intervals: list[str] = Field(default_factory=list)
    routes: list[RouteModel] = Field(default_factory=list)


class InhibitRuleModel(StrictModel):
    """A firing source alert mutes the target alerts whose ``equal`` labels have the same values."""

    source_matchers: list[MatcherField] = Field(min_length=1)
    target_matchers: list[MatcherField] = Field(min_length=1)
    equal: list[LabelName] = Field(default_factory=list)


class RoutesFile(StrictModel):
    """The whole ``alert_routes.yaml``."""

    global_: GlobalSettings = Field(default_factory=GlobalSettings, alias="global")
    route: RouteModel
    receivers: list[ReceiverModel] = Field(min_length=1)
    inhibit_rules: list[InhibitRuleModel] = Field(default_factory=list)
    time_intervals: list[TimeInterval] = Field(default_factory=list)


# ---------------------------------------------------------------- the compiled tree


@dataclass(frozen=True)
class Receiver:
    """A receiver with the global defaults applied."""

    name: str
    urls: tuple[str | SecretRef, ...] = field(repr=False)
    lang: str = "en"
    send_resolved: bool = True
    timeout: float = 10.0
    pagerduty_url: str = "https://events.pagerduty.com"
    opsgenie_api_url: str = "https://api.opsgenie.com"
    max_alerts: int = 10
    max_title: int | None = None
    max_body: int | None = None


@dataclass(frozen=True)
class Route:
    """A route with inherited settings resolved; ``id`` is stable across daemons reading the same file."""

    id: str
    path: KeyPath
    receiver: str
    matchers: tuple[Matcher, ...]
    continue_: bool
    group_by: tuple[str, ...] | None
    """Label names to group by; None means every label (``group_by: ['...']``)."""
    group_wait: float
    group_interval: float
    repeat_interval: float
    mute_time_intervals: tuple[str, ...]
    active_time_intervals: tuple[str, ...]
    routes: tuple[Route, ...] = ()

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """The routes an alert with ``labels`` goes to, Alertmanager's way.

        A node matches when its matchers do; its children are tried in
        order, the first matching child ends the search unless it has
        ``continue: true``; a matching node with no matching child is the
        route itself.
        """
        if not matches_all(self.matchers, labels):
            return []
        found: list[Route] = []
        for child in self.routes:
            hits = child.match(labels)
            found.extend(hits)
            if hits and not child.continue_:
                break
        return found or [self]

    def group_labels(self, labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        if self.group_by is None:
            return tuple(sorted(labels.items()))
        return tuple(sorted((name, labels[name]) for name in self.group_by if name in labels))

    def walk(self) -> list[Route]:
        out = [self]
        for child in self.routes:
            out.extend(child.walk())
        return out


@dataclass(frozen=True)
class InhibitRule:
    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...]


@dataclass(frozen=True)
class RoutingTree:
    """Everything the alerts plugin needs from the routing file."""

    path: Path
    root: Route
    receivers: dict[str, Receiver]
    inhibit_rules: tuple[InhibitRule, ...]
    time_intervals: dict[str, TimeInterval]
    settings: GlobalSettings
    digest: str = ""
    """A hash of the file's content: daemons whose digests differ group differently."""
    routes: tuple[Route, ...] = field(default=())

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        return self.root.match(labels)

    def route_by_id(self, route_id: str) -> Route | None:
        for route in self.routes:
            if route.id == route_id:
                return route
        return None


def group_key(route: Route, group_labels: Sequence[tuple[str, str]]) -> str:
    """The identity of one aggregation group, the same on every daemon reading the same file."""
    return f"{route.id}:{json.dumps(dict(group_labels), sort_keys=True, separators=(',', ':'), ensure_ascii=False)}"


def notification_key(receiver: str, gkey: str) -> str:
    """A short hash of (receiver, group key): the KV key, outbox key and PagerDuty dedup key."""
    return hashlib.sha256(f"{receiver}\x00{gkey}".encode()).hexdigest()[:32]


# ---------------------------------------------------------------- loading and checking


LOG_ONLY_ROUTES = "log-only"
"""The tree used when the default routing file does not exist: every alert is logged, nothing is sent."""


def log_only_tree(path: Path) -> RoutingTree:
    model = RoutesFile.model_validate({"route": {"receiver": LOG_ONLY_ROUTES, "group_by": ["alertname", "region"]},
                                       "receivers": [{"name": LOG_ONLY_ROUTES}]})
    issues: list[ConfigIssue] = []
    return _compile(model, Source(path, {}, {}), issues, check_urls=False)


def load_routes(path: Path, *, check_urls: bool = True, secrets: Mapping[str, Any] | None = None,
                secrets_file: Path | None = None) -> RoutingTree:
    """Read and check a routing file; raise :class:`ConfigError` listing every problem.

    With ``secrets`` (this region's ``alerts.secrets``), every ``{secret: NAME}``
    must name one of them (``secrets_file`` is named in the message).
    """
    try:
        source = load_yaml(path)
    except YamlError as exc:
        raise ConfigError([ConfigIssue(exc.path, (), exc.message, exc.line, code="yaml")]) from None
    if source.data is None:
        raise ConfigError([ConfigIssue(path, (), "the file is empty; it needs route: and receivers:", 1)])
    model = validate_source(source, RoutesFile)
    issues: list[ConfigIssue] = []
    tree = _compile(model, source, issues, check_urls=check_urls)
    if secrets is not None:
        for i, receiver in enumerate(model.receivers):
            for j, url in enumerate(receiver.urls):
                if isinstance(url, SecretRef) and url.secret not in secrets:
                    keypath: KeyPath = ("receivers", i, "urls", j)
                    issues.append(ConfigIssue(path, keypath, f"secret {url.secret!r} is not in this region's config "
                                              f"(add alerts.secrets.{url.secret} to {secrets_file or 'it'})",
                                              source.line_of(keypath)))
    if issues:
        raise ConfigError(sorted(issues, key=lambda i: i.line or 0))
    return tree


def _compile(model: RoutesFile, source: Source, issues: list[ConfigIssue], *, check_urls: bool) -> RoutingTree:
    path = source.path

    def issue(keypath: KeyPath, message: str) -> None:
        issues.append(ConfigIssue(path, keypath, message, source.line_of(keypath)))

    g = model.global_
    receivers: dict[str, Receiver] = {}
    for i, r in enumerate(model.receivers):
        if r.name in receivers:
            issue(("receivers", i, "name"), f"receiver {r.name!r} is defined twice")
            continue
        receivers[r.name] = Receiver(
            name=r.name, urls=tuple(r.urls), lang=r.lang or g.lang,
            send_resolved=g.send_resolved if r.send_resolved is None else r.send_resolved,
            timeout=r.timeout or g.timeout, pagerduty_url=(r.pagerduty_url or g.pagerduty_url).rstrip("/"),
            opsgenie_api_url=(r.opsgenie_api_url or g.opsgenie_api_url).rstrip("/"),
            max_alerts=r.max_alerts, max_title=r.max_title, max_body=r.max_body,
        )
        if check_urls:
            for j, url in enumerate(r.urls):
                if type(url) is not str:
                    continue  # !encrypted or a secret reference: checked where its value is
                try:
                    parse_target(url, j)
                except TargetError as exc:
                    issue(("receivers", i, "urls", j), str(exc))

    intervals: dict[str, TimeInterval] = {}
    for i, interval in enumerate(model.time_intervals):
        if interval.name in intervals:
            issue(("time_intervals", i, "name"), f"time interval {interval.name!r} is defined twice")
        intervals[interval.name] = interval

    root_model = model.route
    root_path: KeyPath = ("route",)
    if root_model.receiver is None:
        issue(root_path, "the root route needs a receiver (every alert must end somewhere)")
    if root_model.matchers:
        issue(root_path + ("matchers",), "the root route matches every alert; it cannot have matchers")
    if root_model.continue_:
        issue(root_path + ("continue",), "the root route cannot have continue")
    if root_model.mute_time_intervals or root_model.active_time_intervals:
        issue(root_path, "the root route cannot have mute_time_intervals or active_time_intervals")

    ids: set[str] = set()

    def build(node: RouteModel, keypath: KeyPath, parent: Route | None) -> Route:
        receiver = node.receiver or (parent.receiver if parent else "")
        if node.receiver is not None and node.receiver not in receivers:
            known = ", ".join(sorted(receivers)) or "none"
            issue(keypath + ("receiver",), f"unknown receiver {node.receiver!r} (known: {known})")
        for kind in ("mute_time_intervals", "active_time_intervals"):
            for j, name in enumerate(getattr(node, kind)):
                if name not in intervals:
                    issue(keypath + (kind, j), f"unknown time interval {name!r}")
        if node.group_by is not None and "..." in node.group_by and len(node.group_by) > 1:
            issue(keypath + ("group_by",), "'...' (group by every label) cannot be combined with label names")
        group_by: tuple[str, ...] | None
        if node.group_by is None:
            group_by = parent.group_by if parent else ()
        elif "..." in node.group_by:
            group_by = None
        else:
            group_by = tuple(node.group_by)
        chain = (parent.id if parent else "") + "/{" + ",".join(str(m) for m in node.matchers) + "}"
        route_id, n = chain, 1
        while route_id in ids:  # two siblings with identical matchers: keep their groups apart
            n += 1
            route_id = f"{chain}#{n}"
        ids.add(route_id)
        route = Route(
            id=route_id, path=keypath, receiver=receiver, matchers=tuple(node.matchers), continue_=node.continue_,
            group_by=group_by,
            group_wait=_pick(node.group_wait, parent.group_wait if parent else DEFAULT_GROUP_WAIT),
            group_interval=_pick(node.group_interval, parent.group_interval if parent else DEFAULT_GROUP_INTERVAL),
            repeat_interval=_pick(node.repeat_interval, parent.repeat_interval if parent else DEFAULT_REPEAT_INTERVAL),
            mute_time_intervals=tuple(node.mute_time_intervals),
            active_time_intervals=tuple(node.active_time_intervals),
        )
        children = tuple(build(child, keypath + ("routes", i), route) for i, child in enumerate(node.routes))
        return Route(**{**route.__dict__, "routes": children})

    root = build(root_model, root_path, None)
    rules = tuple(InhibitRule(tuple(r.source_matchers), tuple(r.target_matchers), tuple(r.equal))
                  for r in model.inhibit_rules)
    raw = json.dumps(source.data, sort_keys=True, default=str).encode()
    return RoutingTree(path=path, root=root, receivers=receivers, inhibit_rules=rules, time_intervals=intervals,
                       settings=g, digest=hashlib.sha256(raw).hexdigest()[:12], routes=tuple(root.walk()))


def _pick(value: float | None, inherited: float) -> float:
    return inherited if value is None else value
