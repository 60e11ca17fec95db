"""Alerts in, notification candidates out: the alert store, aggregation groups, inhibition, silences, mute times.

Every daemon runs the same dispatcher over the alerts it sees, so that any of
them can notify. An alert is routed through the tree into one group per
matching route (``group_by`` labels); a new group is flushed after
``group_wait``, then every ``group_interval``. A flush yields the group's
*content*: the firing alerts not inhibited or silenced, the alerts resolved
since the last flush, and the silenced ones (reported as resolved to a
receiver that heard them firing). The content goes to the outbox only when
it changed, or when ``repeat_interval`` has passed; whether the receiver
actually needs it is then decided federation-wide (see :mod:`.nflog`).

Pure logic over injected clocks: no I/O, no event loop.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from meshd.alerting import Alert

from .matchers import LABEL_NAME, matches_all
from .routes import Route, RoutingTree, group_key, notification_key
from .silences import SilenceStore
from .timeintervals import utc

MAX_LABELS = 64
MAX_VALUE = 1024
MAX_ANNOTATIONS = 16 * 1024
MAX_ALERTS_IN_CONTENT = 200
"""Alerts whose labels and annotations a notification carries; the rest are only counted."""


class InvalidAlert(ValueError):
    """An alert that cannot be accepted; ``reason`` is a metric label."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


def check_alert(alert: Any) -> Alert:
    """``alert`` if it is well formed; :class:`InvalidAlert` saying why not."""
    if not isinstance(alert, Alert):
        raise InvalidAlert("type", f"expected a meshd.Alert, got {type(alert).__name__}")
    labels = alert.labels
    if not isinstance(labels, dict) or not labels.get("alertname"):
        raise InvalidAlert("no_alertname", "an alert needs labels with an alertname")
    if len(labels) > MAX_LABELS:
        raise InvalidAlert("too_many_labels", f"{len(labels)} labels (at most {MAX_LABELS})")
    for name, value in labels.items():
        if not isinstance(name, str) or not LABEL_NAME.match(name):
            raise InvalidAlert("bad_label", f"label name {name!r} is not valid")
        if not isinstance(value, str) or len(value) > MAX_VALUE:
            raise InvalidAlert("bad_label", f"label {name} must be a string of at most {MAX_VALUE} characters")
    annotations = alert.annotations
    if not isinstance(annotations, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in annotations.items()):
        raise InvalidAlert("bad_annotation", "annotations must map strings to strings")
    if sum(len(k) + len(v) for k, v in annotations.items()) > MAX_ANNOTATIONS:
        raise InvalidAlert("bad_annotation", f"annotations exceed {MAX_ANNOTATIONS} characters")
    if alert.status not in ("firing", "resolved"):
        raise InvalidAlert("bad_status", f"status {alert.status!r} is neither firing nor resolved")
    for stamp in (alert.starts_at, alert.ends_at):
        if stamp is not None and (not isinstance(stamp, (int, float)) or not math.isfinite(stamp)):
            raise InvalidAlert("bad_time", "starts_at / ends_at must be epoch seconds")
    return alert


@dataclass
class Tracked:
    """An alert as this daemon holds it."""

    alert: Alert
    updated_at: float
    """Wall-clock time it was last raised (a refresh counts)."""

    @property
    def fingerprint(self) -> str:
        return self.alert.fingerprint

    @property
    def firing(self) -> bool:
        return self.alert.status == "firing"

    def to_json(self) -> dict[str, Any]:
        a = self.alert
        return {"labels": dict(a.labels), "annotations": dict(a.annotations), "status": a.status,
                "starts_at": a.starts_at, "ends_at": a.ends_at}


@dataclass
class Group:
    """One aggregation group: alerts of one route with the same ``group_by`` values."""

    route: Route
    labels: tuple[tuple[str, str], ...]
    key: str
    fingerprints: set[str] = field(default_factory=set)
    next_flush: float = 0.0
    last_signature: tuple[Any, ...] | None = None
    last_enqueued: float = -math.inf
    """Wall-clock time the last candidate of this group went to the outbox."""

    notification_key: str = ""
    """Hash of (receiver, group key): the outbox and notification-log key."""

    def __post_init__(self) -> None:
        self.notification_key = notification_key(self.route.receiver, self.key)

    @property
    def receiver(self) -> str:
        return self.route.receiver


@dataclass(frozen=True)
class AlertState:
    """What ``meshd alerts list`` shows for one alert."""

    tracked: Tracked
    state: str
    """firing, silenced, inhibited or resolved."""
    silenced_by: str | None
    routes: tuple[str, ...]


class Dispatcher:
    """The alert store and its groups for one daemon."""

    def __init__(self, tree: RoutingTree, silences: SilenceStore):
        self.tree = tree
        self.silences = silences
        self.alerts: dict[str, Tracked] = {}
        self.groups: dict[str, Group] = {}
        self.notified_at: dict[str, float] = {}
        """When the federation last notified each (receiver, group), as the notification log says.

        An unchanged group is offered again once ``repeat_interval`` has passed
        since *that* moment, not since this daemon's own last candidate: the
        claim may have been made later (or by a peer), and a candidate offered
        too early is skipped by the log's repeat rule.
        """

    # ------------------------------------------------------------ alerts in

    def ingest(self, alert: Alert, now: float, mono: float) -> bool:
        """Take a raised or resolved alert; True if it changed anything a notification shows."""
        fp = alert.fingerprint
        known = self.alerts.get(fp)
        if alert.status == "firing":
            if known is not None and known.firing:
                merged = replace(alert, starts_at=min(known.alert.starts_at or now, alert.starts_at or now))
                changed = merged.annotations != known.alert.annotations
                known.alert, known.updated_at = merged, now
                return changed
            self.alerts[fp] = Tracked(replace(alert, starts_at=alert.starts_at or now, ends_at=None), now)
        else:
            if known is None or not known.firing:
                return False  # never seen firing here: nothing to tell anyone
            known.alert = replace(alert, starts_at=known.alert.starts_at, ends_at=alert.ends_at or now,
                                  annotations=alert.annotations or known.alert.annotations)
            known.updated_at = now
        self._route(self.alerts[fp], mono)
        return True

    def _route(self, tracked: Tracked, mono: float) -> None:
        for route in self.tree.match(tracked.alert.labels):
            labels = route.group_labels(tracked.alert.labels)
            key = group_key(route, labels)
            group = self.groups.get(key)
            if group is None:
                group = Group(route, labels, key, next_flush=mono + route.group_wait)
                self.groups[key] = group
            group.fingerprints.add(tracked.fingerprint)

    def expire_stale(self, now: float) -> list[Alert]:
        """Resolve firing alerts nobody refreshed for ``resolve_timeout`` (when set); the alerts resolved."""
        timeout = self.tree.settings.resolve_timeout
        if timeout <= 0:
            return []
        return [replace(t.alert, status="resolved", ends_at=now) for t in self.alerts.values()
                if t.firing and now - t.updated_at > timeout]

    def reload(self, tree: RoutingTree, mono: float) -> None:
        """Regroup every alert under a new routing tree; groups that still exist (same route, same
        receiver) keep their timers and what they last queued, so a reload sends nothing by itself."""
        old = self.groups
        self.tree, self.groups = tree, {}
        for tracked in self.alerts.values():
            self._route(tracked, mono)
        for key, group in self.groups.items():
            before = old.get(key)
            if before is not None and before.receiver == group.receiver:
                group.next_flush, group.last_signature, group.last_enqueued = (
                    before.next_flush, before.last_signature, before.last_enqueued)

    # ------------------------------------------------------------ state

    def inhibited(self, tracked: Tracked) -> bool:
        labels = tracked.alert.labels
        for rule in self.tree.inhibit_rules:
            if not matches_all(rule.target, labels):
                continue
            for source in self.alerts.values():
                if (source.firing and source.fingerprint != tracked.fingerprint
                        and matches_all(rule.source, source.alert.labels)
                        and all(source.alert.labels.get(n, "") == labels.get(n, "") for n in rule.equal)):
                    return True
        return False

    def muted(self, route: Route, now: float) -> bool:
        instant = utc(now)
        intervals = self.tree.time_intervals
        if any(intervals[name].contains(instant) for name in route.mute_time_intervals if name in intervals):
            return True
        active = [intervals[name] for name in route.active_time_intervals if name in intervals]
        return bool(active) and not any(i.contains(instant) for i in active)

    def states(self, now: float) -> list[AlertState]:
        routes: dict[str, list[str]] = {}
        for group in self.groups.values():
            for fp in group.fingerprints:
                routes.setdefault(fp, []).append(group.receiver)
        out = []
        for fp, tracked in sorted(self.alerts.items(), key=lambda kv: (kv[1].alert.name, kv[0])):
            silence = self.silences.matching(tracked.alert.labels, now) if tracked.firing else None
            if not tracked.firing:
                state = "resolved"
            elif self.inhibited(tracked):
                state = "inhibited"
            elif silence is not None:
                state = "silenced"
            else:
                state = "firing"
            out.append(AlertState(tracked, state, silence.id if silence else None, tuple(sorted(set(routes.get(fp, []))))))
        return out

    # ------------------------------------------------------------ groups out

    def next_due(self) -> float | None:
        return min((g.next_flush for g in self.groups.values()), default=None)

    def due(self, mono: float) -> list[Group]:
        return [g for g in self.groups.values() if g.next_flush <= mono]

    def flush(self, group: Group, now: float, mono: float) -> dict[str, Any] | None:
        """Flush one due group: its notification content if the receiver may need to hear it, else None."""
        route = group.route
        group.next_flush = mono + route.group_interval
        if self.muted(route, now):
            return None  # alerts stay; the first flush after the mute decides
        firing: list[str] = []
        resolved: list[str] = []
        silenced: dict[str, str] = {}
        for fp in sorted(group.fingerprints):
            tracked = self.alerts.get(fp)
            if tracked is None:
                group.fingerprints.discard(fp)
                continue
            if not tracked.firing:
                resolved.append(fp)
                continue
            if self.inhibited(tracked):
                continue  # held back while its source fires, neither firing nor resolved
            silence = self.silences.matching(tracked.alert.labels, now)
            if silence is not None:
                silenced[fp] = silence.description() or silence.id
                continue
            firing.append(fp)
        listed = (firing + resolved + sorted(silenced))[:MAX_ALERTS_IN_CONTENT]
        alerts = {fp: self.alerts[fp].to_json() for fp in listed}
        for fp in resolved:  # handed to the outbox once; the group forgets them
            group.fingerprints.discard(fp)
        if not group.fingerprints:
            self.groups.pop(group.key, None)
            self.notified_at.pop(group.notification_key, None)
        self._forget_resolved(resolved)
        if not (firing or resolved or silenced):
            return None
        signature = (tuple(firing), tuple(resolved), tuple(sorted(silenced)))
        since = self.notified_at.get(group.notification_key, group.last_enqueued)
        if signature == group.last_signature and now - since < route.repeat_interval:
            return None
        group.last_signature, group.last_enqueued = signature, now
        return {
            "v": 1,
            "receiver": group.receiver,
            "route": route.id,
            "group_key": group.key,
            "group_labels": dict(group.labels),
            "firing": firing,
            "resolved": resolved,
            "silenced": silenced,
            "alerts": alerts,
            "at": now,
        }

    def _forget_resolved(self, fingerprints: Iterable[str]) -> None:
        held = set().union(*(g.fingerprints for g in self.groups.values())) if self.groups else set()
        for fp in fingerprints:
            tracked = self.alerts.get(fp)
            if tracked is not None and not tracked.firing and fp not in held:
                # Kept until every group that held it has flushed it.
                del self.alerts[fp]
