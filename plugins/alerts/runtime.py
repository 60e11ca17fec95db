"""One daemon's alerting machinery: dispatcher, outbox, notification log, delivery, silences.

:class:`AlertsRuntime` is created at ``meshd_startup`` and owns every piece
of per-daemon state (several daemons may share a process). The plugin class
in ``__init__`` only forwards hooks to it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus

from meshd.alerting import Alert, DeliveryResult
from meshd.config import ConfigError
from meshd.envelope import Envelope
from meshd.i18n import Translator
from meshd.logs import register_secret
from meshd.transport import KeyValueStore, Message

from .config import AlertsConfig
from .delivery import Delivery
from .dispatcher import Dispatcher, InvalidAlert, check_alert
from .metrics import AlertMetrics
from .nflog import NotificationLog, open_bucket
from .outbox import AsyncOutbox
from .routes import RoutingTree, SecretRef, load_routes, log_only_tree
from .silences import Silence, SilenceError, SilenceStore, new_silence
from .targets import Target, TargetError, parse_target

if TYPE_CHECKING:
    from meshd.daemon import Daemon

BUS_KIND = "alerts"
DEADMAN = "DeadMansSwitch"
SILENCE_KEEP = 5 * 86400.0
"""Expired silences are forgotten this long after their end."""


def load_tree(path: Path, explicit: bool) -> tuple[RoutingTree, bool]:
    """(tree, log_only): the routing file, or the log-only tree when the default file does not exist.

    A routing file none of whose receivers has a URL (what ``meshd init`` writes until the
    operator fills them in) is log-only too: nothing can be sent, so no dead man's switch.
    """
    if not explicit and not path.exists():
        return log_only_tree(path), True
    tree = load_routes(path, check_urls=False)
    return tree, not any(receiver.urls for receiver in tree.receivers.values())


class AlertsRuntime:
    """Everything the alerts plugin does for one daemon."""

    def __init__(self, daemon: Daemon, settings: AlertsConfig, tree: RoutingTree, log_only: bool):
        self.daemon = daemon
        self.settings = settings
        self.tree = tree
        self.log_only = log_only
        self.log = daemon.log.getChild("alerts")
        self.region, self.federation = daemon.region, daemon.federation
        regions = sorted(daemon.regions)
        self.rank = regions.index(self.region) if self.region in regions else 0
        self.metrics = AlertMetrics(daemon.metrics)
        self.silences = SilenceStore()
        self.dispatcher = Dispatcher(tree, self.silences)
        self.outbox = AsyncOutbox(daemon.state_dir / "alerts.sqlite")
        d = settings.dedup
        self.nflog = NotificationLog(daemon.transport, d.bucket, replicas=d.replicas, ttl=d.retention,
                                     timeout=d.timeout)
        self.delivery = Delivery(self)
        self._targets: dict[str, tuple[list[Target], str]] = {}
        self._translators: dict[str, Translator] = {}
        self._wake = anyio.Event()
        self._silence_wake = anyio.Event()
        self._unsynced: set[str] = set()
        self._silence_kv: KeyValueStore | None = None
        self._silence_sync_ok = True
        self._gauges_at = 0.0

    # ------------------------------------------------------------ configuration

    def load_targets(self) -> None:
        """Decrypt and parse every receiver URL; a bad one makes its receiver fail (and say why)."""
        targets: dict[str, tuple[list[Target], str]] = {}
        for name, receiver in self.tree.receivers.items():
            parsed: list[Target] = []
            problem = ""
            for i, url in enumerate(receiver.urls):
                if isinstance(url, SecretRef):
                    if url.secret not in self.settings.secrets:
                        problem = f"urls[{i}]: alerts.secrets.{url.secret} is not in this region's config"
                        break
                    url = self.settings.secrets[url.secret]
                try:
                    plain = self.daemon.secret(url)
                    target = parse_target(plain, i)
                except TargetError as exc:
                    problem = f"urls[{i}]: {exc}"
                    break
                except Exception as exc:  # SecretUnavailable and friends
                    problem = f"urls[{i}]: {exc}"
                    break
                for part in target.secret_parts:
                    register_secret(part)
                parsed.append(target)
            if problem:
                self.log.error("receiver %s: %s", name, problem)
            targets[name] = (parsed, problem)
        self._targets = targets

    def targets(self, receiver: str) -> tuple[list[Target], str]:
        return self._targets.get(receiver, ([], f"receiver {receiver!r} is not configured"))

    def translator(self, lang: str) -> Translator:
        t = self._translators.get(lang)
        if t is None:
            t = self._translators[lang] = Translator(lang)
        return t

    async def reload(self, settings: AlertsConfig, path: Path, explicit: bool) -> None:
        try:
            tree, log_only = load_tree(path, explicit)
        except ConfigError as exc:  # validated already; the file changed in between
            for issue in exc.issues:
                self.log.error("routing file not reloaded: %s", issue)
            return
        self.settings, self.tree, self.log_only = settings, tree, log_only
        self.dispatcher.reload(tree, time.monotonic())
        await anyio.to_thread.run_sync(self.load_targets)
        self.log.info("routing file %s reloaded (%d routes, %d receivers, digest %s)", tree.path,
                      len(tree.routes), len(tree.receivers), tree.digest)
        self._wake.set()

    def log_only_reason(self) -> str:
        return "no routing file" if not self.tree.path.exists() else "no receiver has a URL"

    # ------------------------------------------------------------ startup

    async def start(self) -> None:
        # Decrypting secrets may call a KMS, and apprise loads its ~190 service
        # modules on first use (seconds on a busy host): both off the loop,
        # now, rather than inside the first urgent delivery. apprise costs
        # ~15 MiB, so only a daemon with apprise receivers loads it at all.
        await anyio.to_thread.run_sync(self.load_targets)
        if any(t.kind == "apprise" for parsed, _ in self._targets.values() for t in parsed):
            await anyio.to_thread.run_sync(_warm_apprise)
        await self.outbox.open()
        for doc, synced in await self.outbox.run(self.outbox.sync.load_silences):
            try:
                silence = Silence.from_json(doc)
            except SilenceError as exc:
                self.log.error("ignoring a stored silence: %s", exc)
                continue
            self.silences.merge(silence)
            if not synced:
                self._unsynced.add(silence.id)
        await self.daemon.bus.subscribe(BUS_KIND, self._on_bus)
        what = f"log only ({self.log_only_reason()})" if self.log_only else f"{len(self.tree.routes)} routes"
        self.log.info("alerts: %s from %s, %d receivers, outbox %s", what, self.tree.path, len(self.tree.receivers),
                      self.outbox.sync.path)

    # ------------------------------------------------------------ alerts in

    def ingest(self, alert: Any) -> None:
        """Take one alert from ``meshd_alert``; a malformed one is counted and logged, never raised."""
        try:
            alert = check_alert(alert)
        except InvalidAlert as exc:
            self.metrics.rejected.labels(exc.reason).inc()
            self.log.warning("alert dropped: %s", exc)
            return
        self.metrics.received.labels(alert.status).inc()
        if self.dispatcher.ingest(alert, time.time(), time.monotonic()):
            self._wake.set()

    async def dispatch(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The service flushing due groups into the outbox."""
        task_status.started()
        while True:
            now, mono = time.time(), time.monotonic()
            for alert in self.dispatcher.expire_stale(now):
                self.dispatcher.ingest(alert, now, mono)
            for group in self.dispatcher.due(mono):
                content = self.dispatcher.flush(group, now, mono)
                if content is not None:
                    await self._enqueue(group.notification_key, group.receiver, group.key, content, group)
            self._update_gauges(now)
            nxt = self.dispatcher.next_due()
            timeout = 5.0 if nxt is None else min(5.0, max(0.0, nxt - time.monotonic()))
            if timeout > 0:
                with anyio.move_on_after(timeout):
                    await self._wake.wait()
            self._wake = anyio.Event()

    async def _enqueue(self, key: str, receiver: str, gkey: str, content: dict[str, Any], group: Any) -> None:
        try:
            await self.outbox.run(self.outbox.sync.add, key=key, receiver=receiver, group_key=gkey, content=content)
        except Exception as exc:
            # Not written means not promised: forget the signature so the next flush tries again.
            group.last_signature = None
            self.metrics.errors.labels("outbox").inc()
            self.log.error("could not write a notification to the outbox: %s: %s", type(exc).__name__, exc)
            return
        self.metrics.queued.labels(receiver).inc()
        self.delivery.kick(key)

    def notified(self, key: str, at: float) -> None:
        """The notification log says (receiver, group) ``key`` was last notified at ``at``."""
        if key in self.dispatcher.notified_at or any(g.notification_key == key
                                                     for g in self.dispatcher.groups.values()):
            self.dispatcher.notified_at[key] = max(at, self.dispatcher.notified_at.get(key, 0.0))

    def _update_gauges(self, now: float) -> None:
        if now - self._gauges_at < 1.0:
            return  # at most once a second: a burst of alerts wakes the loop for each one
        self._gauges_at = now
        counts = {"firing": 0, "silenced": 0, "inhibited": 0, "resolved": 0}
        for state in self.dispatcher.states(now):
            counts[state.state] += 1
        for state, n in counts.items():
            self.metrics.active.labels(state).set(n)
        self.metrics.groups.set(len(self.dispatcher.groups))
        self.metrics.silences.set(self.silences.active_count(now))

    async def deadman(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The service raising the always-firing DeadMansSwitch alert."""
        task_status.started()
        alert = Alert(labels={"alertname": DEADMAN, "severity": "info", "region": self.region},
                      annotations={"summary": f"The alert pipeline of {self.region} works",
                                   "description": "Always firing. Route it to a heartbeat receiver that pages "
                                                  "when the notifications stop."})
        while True:
            await self.daemon.hooks.alert(self.daemon, alert)
            await anyio.sleep(self.settings.deadman.refresh)

    # ------------------------------------------------------------ the bus

    async def _on_bus(self, envelope: Envelope, _message: Message) -> None:
        body = envelope.body
        if envelope.type == "notified":
            key = body.get("key")
            if isinstance(key, str):
                self.delivery.announced(key, [str(x) for x in body.get("firing", [])],
                                        [str(x) for x in body.get("resolved", [])])
            receiver = body.get("receiver")
            if isinstance(receiver, str) and body.get("ok"):
                # A peer got through to this receiver: it works again.
                await self.delivery.receiver_ok(receiver)
        elif envelope.type == "silence":
            try:
                silence = Silence.from_json(body)
            except SilenceError as exc:
                self.log.warning("silence from %s ignored: %s", envelope.sender, exc)
                return
            if self.silences.merge(silence):
                await self.outbox.run(self.outbox.sync.save_silence, silence.id, silence.to_json(), True)

    async def announce(self, key: str, receiver: str, ok: bool, firing: list[str], resolved: list[str]) -> None:
        """Tell peers this daemon delivered (firing, resolved) for ``key`` (the fast path beside the KV)."""
        await self.daemon.bus.publish(BUS_KIND, "notified", {"key": key, "receiver": receiver, "ok": ok,
                                                             "firing": firing, "resolved": resolved})

    # ------------------------------------------------------------ silences

    async def silences_service(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The service keeping silences in step with the KV bucket."""
        task_status.started()
        while True:
            try:
                await self._sync_silences()
                if not self._silence_sync_ok:
                    self._silence_sync_ok = True
                    self.log.info("silences in step with KV %s again", self.settings.silences.bucket)
            except Exception as exc:
                if self._silence_sync_ok:
                    self._silence_sync_ok = False
                    self.log.warning("cannot sync silences with KV %s: %s: %s; using the local copy",
                                     self.settings.silences.bucket, type(exc).__name__, exc)
                self._silence_kv = None
            with anyio.move_on_after(self.settings.silences.refresh):
                await self._silence_wake.wait()
            self._silence_wake = anyio.Event()

    async def _kv(self) -> KeyValueStore:
        if self._silence_kv is None:
            s = self.settings
            self._silence_kv = await open_bucket(self.daemon.transport, s.silences.bucket, s.dedup.replicas,
                                                 timeout=s.dedup.timeout)
        return self._silence_kv

    async def _sync_silences(self) -> None:
        timeout = self.settings.dedup.timeout * 4
        with anyio.fail_after(timeout):
            kv = await self._kv()
            for key in await kv.keys():
                if not key.startswith("s."):
                    continue
                entry = await kv.get(key)
                if entry is None:
                    continue
                try:
                    silence = Silence.from_json(json.loads(entry.value))
                except (ValueError, SilenceError):
                    continue
                if self.silences.merge(silence):
                    await self.outbox.run(self.outbox.sync.save_silence, silence.id, silence.to_json(), True)
            for sid in sorted(self._unsynced):
                silence = self.silences.silences.get(sid)
                if silence is not None:
                    await self._put_silence(kv, silence)
                self._unsynced.discard(sid)
            for sid in self.silences.forget_expired(time.time(), SILENCE_KEEP):
                await self.outbox.run(self.outbox.sync.delete_silence, sid)
                await kv.delete(f"s.{sid}")

    async def _put_silence(self, kv: KeyValueStore, silence: Silence) -> None:
        await kv.put(f"s.{silence.id}", json.dumps(silence.to_json(), ensure_ascii=False).encode())
        await self.outbox.run(self.outbox.sync.save_silence, silence.id, silence.to_json(), True)

    async def store_silence(self, silence: Silence) -> None:
        """Keep a new or changed silence: locally first, then the KV and the bus."""
        self.silences.merge(silence)
        await self.outbox.run(self.outbox.sync.save_silence, silence.id, silence.to_json(), False)
        try:
            with anyio.fail_after(self.settings.dedup.timeout):
                await self._put_silence(await self._kv(), silence)
        except Exception as exc:
            self._unsynced.add(silence.id)
            self._silence_kv = None
            self.log.warning("silence %s kept locally; the KV will get it later (%s)", silence.id,
                             type(exc).__name__)
        await self.daemon.bus.publish(BUS_KIND, "silence", silence.to_json())
        self._wake.set()

    async def add_silence(self, matchers: list[str], duration: float, comment: str, created_by: str,
                          starts_at: float | None = None) -> Silence:
        silence = new_silence(matchers, duration=duration, comment=comment, created_by=created_by,
                              now=time.time(), starts_at=starts_at)
        await self.store_silence(silence)
        self.log.info("silence %s added by %s until %s: %s", silence.id, silence.created_by or "?",
                      time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(silence.ends_at)),
                      " ".join(str(m) for m in silence.matchers))
        return silence

    async def expire_silence(self, sid: str) -> Silence | None:
        silence = self.silences.silences.get(sid)
        if silence is None:
            return None
        expired = silence.expired(time.time())
        await self.store_silence(expired)
        self.log.info("silence %s expired", sid)
        return expired

    # ------------------------------------------------------------ test sends

    async def test_receiver(self, name: str) -> list[dict[str, Any]]:
        """Send a test notification to every URL of receiver ``name`` now (no dedup, no outbox)."""
        from .outbox import Row

        receiver = self.tree.receivers[name]
        targets, problem = self.targets(name)
        if problem:
            return [{"target": None, "ok": False, "detail": problem}]
        now = time.time()
        labels = {"alertname": "MeshdTestNotification", "severity": "info", "region": self.region,
                  "receiver": name}
        content = {"route": "test", "group_key": f"test:{name}", "group_labels": {"receiver": name},
                   "firing": ["test"], "resolved": [], "silenced": {}, "at": now,
                   "alerts": {"test": {"labels": labels, "annotations": {
                       "summary": self.translator(receiver.lang)("alerts.test.summary", receiver=name,
                                                                 region=self.region)},
                       "status": "firing", "starts_at": now, "ends_at": None}}}
        row = Row(0, f"test-{name}", name, content["group_key"], content, created_at=now)
        results = []
        for target in targets:
            result: DeliveryResult = await self.delivery.attempt(
                self.delivery.notification(row, receiver, target), receiver.timeout)
            results.append({"target": target.redacted, "ok": result.ok, "detail": result.detail[:300]})
        if not targets:
            results.append({"target": None, "ok": True, "detail": "no URLs: logged only"})
            self.log.info("test notification for %s (no URLs, logged only)", name)
        return results

    # ------------------------------------------------------------ status

    def receivers_json(self) -> list[dict[str, Any]]:
        out = []
        broken = self.delivery.broken
        for name, receiver in sorted(self.tree.receivers.items()):
            targets, problem = self.targets(name)
            out.append({"name": name, "lang": receiver.lang, "send_resolved": receiver.send_resolved,
                        "targets": [t.redacted for t in targets], "problem": problem or None,
                        "broken": broken.get(name)})
        return out

    async def status(self) -> dict[str, Any]:
        now = time.time()
        counts: dict[str, int] = {"firing": 0, "silenced": 0, "inhibited": 0, "resolved": 0}
        for state in self.dispatcher.states(now):
            counts[state.state] += 1
        depth, oldest = await self.outbox.run(self.outbox.sync.stats)
        return {
            "routes_file": str(self.tree.path),
            "routes_digest": self.tree.digest,
            "log_only": self.log_only,
            "alerts": counts,
            "groups": len(self.dispatcher.groups),
            "outbox": {"depth": depth, "oldest_pending_s": round(now - oldest, 3) if oldest else 0.0},
            "silences_active": self.silences.active_count(now),
            "fence": "ok" if self.delivery.fence_ok else "unavailable",
            "receivers": self.receivers_json(),
        }

    def alerts_json(self) -> list[dict[str, Any]]:
        now = time.time()
        return [{"fingerprint": s.tracked.fingerprint, **s.tracked.to_json(), "state": s.state,
                 "silenced_by": s.silenced_by, "receivers": list(s.routes)} for s in self.dispatcher.states(now)]

    def silences_json(self, include_expired: bool) -> list[dict[str, Any]]:
        now = time.time()
        return [s.to_json(now) for s in self.silences.listing(now, include_expired)]


def _warm_apprise() -> None:
    import apprise

    apprise.Apprise.instantiate("json://localhost")


def alert_from_json(doc: Mapping[str, Any]) -> Alert:
    """An :class:`Alert` from the HTTP API's JSON; ValueError naming the bad field."""
    if not isinstance(doc, Mapping):
        raise ValueError("each alert must be an object with labels")
    labels = doc.get("labels")
    annotations = doc.get("annotations", {})
    status = doc.get("status", "firing")
    if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise ValueError("labels: must map label names to strings")
    if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
        raise ValueError("annotations: must map names to strings")
    if status not in ("firing", "resolved"):
        raise ValueError("status: must be firing or resolved")
    starts, ends = doc.get("starts_at"), doc.get("ends_at")
    for name, value in (("starts_at", starts), ("ends_at", ends)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"{name}: must be epoch seconds")
    return Alert(labels=dict(labels), annotations=dict(annotations), status=status,
                 starts_at=float(starts) if starts is not None else None,
                 ends_at=float(ends) if ends is not None else None)

