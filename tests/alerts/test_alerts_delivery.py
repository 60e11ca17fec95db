"""Delivery against real HTTP receivers on loopback, from daemons on a real nats-server.

PagerDuty Events API v2 (trigger then resolve on one dedup key), Opsgenie
(create, close by alias), apprise json://, retries and their classification,
NotifierBroken, the outbox across a restart, deadlines, and secrets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alerts_receiver import RecordingReceiver, drained, raise_everywhere, runtime, wait_received

import meshd
from meshd.alerting import DeliveryResult, Notification
from meshd.testing import until
from meshd_plugins.alerts.senders import send_apprise
from meshd_plugins.alerts.targets import parse_target

pytestmark = [pytest.mark.anyio, pytest.mark.nats]

REGIONS = ["us-east-1", "eu-west-1", "eu-central-1"]


def routes(receivers: list[dict[str, Any]], routes_: list[dict[str, Any]] | None = None,
           **root: Any) -> dict[str, Any]:
    return {"route": {"receiver": "nowhere", "group_by": ["alertname", "region"], "group_wait": "0s",
                      "group_interval": "500ms", "repeat_interval": "1h", **root, "routes": routes_ or []},
            "receivers": [{"name": "nowhere"}, *receivers]}


def metric(daemon: Any, name: str, **labels: str) -> float:
    return daemon.metrics.value(name, **labels)


async def test_pagerduty_trigger_then_resolve_on_one_dedup_key(alerts_federation: Any, start_daemons: Any,
                                                              receiver: RecordingReceiver) -> None:
    configs = alerts_federation(REGIONS, routes(
        [{"name": "pager", "urls": ["pagerduty://RoutingKey0123@ApiKey/meshd"], "pagerduty_url": receiver.base_url}],
        [{"matchers": ['severity="critical"'], "receiver": "pager"}]))
    labels = {"alertname": "RegionDown", "severity": "critical", "region": "ap-southeast-1"}
    async with start_daemons(configs) as daemons:
        await raise_everywhere(daemons, labels, annotations={"runbook_url": "https://runbooks/region-down"})
        [trigger] = await wait_received(receiver, lambda got: got[:1], what="the trigger")
        await raise_everywhere(daemons, labels, status="resolved")
        await wait_received(receiver, lambda got: len(got) >= 2, what="the resolve")
        await drained(daemons)
        got = receiver.received
        assert [r.body["event_action"] for r in got] == ["trigger", "resolve"]  # once each, for 3 daemons
        resolve = got[1]
        assert {r.path for r in got} == {"/v2/enqueue"}
        assert trigger.body["routing_key"] == resolve.body["routing_key"] == "RoutingKey0123"
        assert trigger.body["dedup_key"] == resolve.body["dedup_key"] and trigger.body["dedup_key"].startswith("meshd-")
        payload = trigger.body["payload"]
        assert payload["summary"] == "[FIRING:1] Region ap-southeast-1 is down"
        assert payload["severity"] == "critical" and payload["source"] == "meshd"
        assert payload["custom_details"]["sent_by"] in REGIONS
        assert trigger.body["links"] == [{"href": "https://runbooks/region-down", "text": "runbook"}]
        dedup = sum(metric(d, "alerts_notifications_deduplicated_total", receiver="pager") for d in daemons.values())
        assert dedup == 4  # two candidates on each of the two daemons that did not send


async def test_opsgenie_create_then_close_by_alias(alerts_federation: Any, start_daemons: Any,
                                                   receiver: RecordingReceiver) -> None:
    configs = alerts_federation(REGIONS[:1], routes(
        [{"name": "genie", "urls": ["opsgenie://GenieKey42abcdef"], "opsgenie_api_url": receiver.base_url}],
        [{"matchers": ['alertname="KeyRotationOverdue"'], "receiver": "genie"}]))
    labels = {"alertname": "KeyRotationOverdue", "severity": "warning", "region": "us-east-1",
              "purpose": "metering"}
    async with start_daemons(configs) as daemons:
        await raise_everywhere(daemons, labels)
        [create] = await wait_received(receiver, lambda got: got[:1], what="the create")
        await raise_everywhere(daemons, labels, status="resolved")
        [_, close] = await wait_received(receiver, lambda got: got[:2] if len(got) >= 2 else None, what="the close")
    assert create.path == "/v2/alerts" and create.headers["authorization"] == "GenieKey GenieKey42abcdef"
    alias = create.body["alias"]
    assert create.body["message"] == "[FIRING:1] Key rotation overdue for metering in us-east-1"
    assert create.body["priority"] == "P3"
    assert close.path == f"/v2/alerts/{alias}/close?identifierType=alias"


async def test_5xx_and_429_are_retried_honouring_retry_after(alerts_federation: Any, start_daemons: Any,
                                                             make_receiver: Any) -> None:
    chat, pager = make_receiver(), make_receiver()
    configs = alerts_federation(REGIONS[:1], routes(
        [{"name": "chat", "urls": [chat.json_url("/chat")]},
         {"name": "pager", "urls": ["pagerduty://Key@Api"], "pagerduty_url": pager.base_url}],
        [{"matchers": ['severity="critical"'], "receiver": "pager", "continue": True},
         {"matchers": ['severity="critical"'], "receiver": "chat"}]))
    chat.fail(503, count=1)
    chat.fail(429, count=1)
    pager.fail(429, count=1, headers={"Retry-After": "2"})
    async with start_daemons(configs) as daemons:
        [daemon] = daemons.values()
        await raise_everywhere(daemons, {"alertname": "FailoverCommitted", "severity": "critical",
                                         "region": "eu-west-1", "target": "eu-central-1"})
        await wait_received(chat, lambda got: got, what="chat after retries")
        await wait_received(pager, lambda got: got, what="pager after retries")
        await drained(daemons)
        assert [a.status for a in chat.attempts] == [503, 429, 202]
        assert [a.status for a in pager.attempts] == [429, 202]
        # backoff_max is 0.5 s here: only the server's Retry-After explains a 2 s wait.
        assert pager.attempts[1].at - pager.attempts[0].at >= 1.9
        # apprise hides response headers: a 429 through it waits at least rate_limited_min (1 s here).
        assert chat.attempts[2].at - chat.attempts[1].at >= 0.95
        assert metric(daemon, "alerts_notifications_failed_total", receiver="chat", reason="http_5xx") == 1
        assert metric(daemon, "alerts_notifications_failed_total", receiver="chat", reason="http_429") == 1
        assert metric(daemon, "alerts_notifications_sent_total", receiver="pager") == 1


async def test_a_4xx_is_final_and_raises_notifier_broken(alerts_federation: Any, start_daemons: Any,
                                                         make_receiver: Any) -> None:
    broken, ops = make_receiver(), make_receiver()
    configs = alerts_federation(REGIONS[:2], routes(
        [{"name": "broken", "urls": [broken.json_url("/broken")]}, {"name": "ops", "urls": [ops.json_url("/ops")]}],
        [{"matchers": ['alertname="NotifierBroken"'], "receiver": "ops"},
         {"matchers": ['team="db"'], "receiver": "broken"}]))
    broken.fail(400)
    async with start_daemons(configs) as daemons:
        await raise_everywhere(daemons, {"alertname": "ProbeFailing", "severity": "warning", "region": "us-east-1",
                                         "probe": "db", "team": "db"})
        [page] = await wait_received(ops, lambda got: got[:1], what="NotifierBroken")
        assert page.title == "[FIRING:1] Notifications to broken are failing in " + page.body["message"].split(
            "Sent by meshd in ")[1].split(" ")[0]
        assert "http_400" in page.message
        await drained(daemons)
        assert len(broken.attempts) == 1  # a 400 is not retried
        assert sum(metric(d, "alerts_notifications_dropped_total", receiver="broken", reason="http_4xx")
                   for d in daemons.values()) == 1
        # The receiver is fixed: the next notification goes through and NotifierBroken resolves.
        broken.heal()
        await raise_everywhere(daemons, {"alertname": "ProbeFailing", "severity": "warning", "region": "eu-west-1",
                                         "probe": "db", "team": "db"})
        await wait_received(broken, lambda got: got, what="a delivery to the fixed receiver")
        resolved = await wait_received(ops, lambda got: [r for r in got if r.title.startswith("[RESOLVED]")],
                                       what="NotifierBroken resolved")
        assert "Notifications to broken are failing" in resolved[0].title


async def test_the_outbox_survives_a_restart(alerts_federation: Any, start_daemons: Any) -> None:
    rx = RecordingReceiver()  # not started: connection refused
    configs = alerts_federation(REGIONS[:1], routes(
        [{"name": "chat", "urls": [rx.json_url("/chat")]}], [{"matchers": ['team="ops"'], "receiver": "chat"}]))
    async with start_daemons(configs) as daemons:
        [daemon] = daemons.values()
        await raise_everywhere(daemons, {"alertname": "RegionDown", "severity": "critical", "region": "x",
                                         "team": "ops"})
        await until(lambda: metric(daemon, "alerts_notifications_failed_total", receiver="chat",
                                   reason="connection") >= 2, what="failed attempts")
        rt = runtime(daemon)
        assert (await rt.outbox.run(rt.outbox.sync.stats))[0] == 1
    rx.start()
    try:
        async with start_daemons(configs) as daemons:  # a new process would do the same: the row is on disk
            [got] = await wait_received(rx, lambda got: got[:1], what="the resumed notification")
            await drained(daemons)
            assert got.title == "[FIRING:1] Region x is down"
            assert len(rx.received) == 1
    finally:
        rx.stop()


async def test_a_hanging_receiver_meets_the_deadline(alerts_federation: Any, start_daemons: Any,
                                                     receiver: RecordingReceiver) -> None:
    configs = alerts_federation(REGIONS[:1], routes(
        [{"name": "slow", "urls": [receiver.json_url("/slow")], "timeout": "500ms"}],
        [{"matchers": ['team="ops"'], "receiver": "slow"}]))
    receiver.delay = 3.0
    async with start_daemons(configs) as daemons:
        [daemon] = daemons.values()
        await raise_everywhere(daemons, {"alertname": "A", "region": "x", "team": "ops"})
        await until(lambda: metric(daemon, "alerts_notifications_failed_total", receiver="slow",
                                   reason="timeout") >= 1, what="a timed-out attempt")
        status = await daemon.status()  # the event loop is not blocked by the hanging send
        assert status["alerts"]["outbox"]["depth"] == 1
        receiver.delay = 0.0
        await until(lambda: metric(daemon, "alerts_notifications_sent_total", receiver="slow") >= 1,
                    what="delivery once the receiver answers in time")


async def test_receiver_tokens_never_reach_logs_or_status(alerts_federation: Any, start_daemons: Any,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    from meshd.logs import TextFormatter

    token = "Sup3rSecretTok3nValue"
    rx = RecordingReceiver()  # down: every attempt fails and is logged
    configs = alerts_federation(REGIONS[:1], routes(
        [{"name": "chat", "urls": [f"json://bot:{token}@127.0.0.1:{rx.port}/hook/{token}"]}],
        [{"matchers": ['team="ops"'], "receiver": "chat"}]))
    caplog.set_level("DEBUG")
    async with start_daemons(configs) as daemons:
        [daemon] = daemons.values()
        await raise_everywhere(daemons, {"alertname": "A", "region": "x", "team": "ops"})
        await until(lambda: metric(daemon, "alerts_notifications_failed_total", receiver="chat",
                                   reason="connection") >= 2, what="failed attempts")
        status = await daemon.status()
    formatter = TextFormatter()
    logged = "\n".join(formatter.format(r) for r in caplog.records)
    assert "delivery to chat[0] (json) failed" in logged
    assert token not in logged
    assert token not in str(status) and "json://" in str(status["alerts"]["receivers"])
    db = (Path(configs["us-east-1"]).parent / "state" / "us-east-1" / "alerts.sqlite").read_bytes()
    assert token.encode() not in db


async def test_apprise_throttles_and_retries_are_switched_off(receiver: RecordingReceiver,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import apprise

    made: list[Any] = []
    original = apprise.Apprise.instantiate

    def spy(*args: Any, **kwargs: Any) -> Any:
        instance = original(*args, **kwargs)
        made.append(instance)
        return instance

    monkeypatch.setattr(apprise.Apprise, "instantiate", staticmethod(spy))
    # ntfy paces its requests 5.5 s apart, and the URL asks apprise to retry 3 times on its own:
    # the instance meshd sends with does neither (the outbox paces and retries).
    url = f"ntfy://127.0.0.1:{receiver.port}/meshd?retry=3"
    asked = original(url)
    assert type(asked).request_rate_per_sec > 0 and asked.request_rate_per_sec > 0 and asked.retry == 3
    result = send_apprise(parse_target(url), "title", "body", "failure", timeout=2.0)
    assert result.ok, result.detail
    assert [r.body.get("topic") for r in receiver.received] == ["meshd"]
    instance = made[-1]
    assert type(instance) is type(asked)
    assert instance.request_rate_per_sec == 0 and instance.retry == 0
    assert instance.socket_connect_timeout <= 2.0 and instance.socket_read_timeout <= 2.0


class CustomNotifier:
    """A third-party meshd_notify: takes receiver 'custom', leaves everything else to the builtin."""

    def __init__(self) -> None:
        self.seen: list[Notification] = []

    @meshd.hookimpl
    def meshd_notify(self, notification: Notification) -> DeliveryResult | None:
        if notification.receiver != "custom":
            return None
        self.seen.append(notification)
        return DeliveryResult(True, detail="custom")


async def test_a_plugin_can_deliver_in_place_of_the_builtin(alerts_federation: Any, start_daemons: Any,
                                                            make_receiver: Any) -> None:
    custom_rx, chat = make_receiver(), make_receiver()
    configs = alerts_federation(REGIONS[:1], routes(
        [{"name": "custom", "urls": [custom_rx.json_url("/never"), custom_rx.json_url("/never2")], "lang": "fr"},
         {"name": "chat", "urls": [chat.json_url("/chat")]}],
        [{"matchers": ['team="ops"'], "receiver": "custom", "continue": True},
         {"matchers": ['team="ops"'], "receiver": "chat"}]))
    async with start_daemons(configs, extra_plugins=[("custom-notifier", CustomNotifier)]) as daemons:
        [daemon] = daemons.values()
        await raise_everywhere(daemons, {"alertname": "RegionDown", "severity": "critical", "region": "x",
                                         "team": "ops"})
        await wait_received(chat, lambda got: got, what="the builtin delivery")
        await drained(daemons)
        plugin = daemon.hooks.pm.get_plugin("custom-notifier")
        assert len(plugin.seen) == 2 and {n.urls for n in plugin.seen} == {(custom_rx.json_url("/never"),),
                                                                             (custom_rx.json_url("/never2"),)}
        assert plugin.seen[0].lang == "fr" and plugin.seen[0].title == "[ALERTE:1] La région x est hors service"
        assert custom_rx.attempts == []


async def test_without_the_kv_log_the_bus_notice_still_prevents_duplicates(alerts_federation: Any,
                                                                           start_daemons: Any,
                                                                           receiver: RecordingReceiver) -> None:
    from meshd_plugins.alerts.nflog import FenceUnavailable

    configs = alerts_federation(REGIONS, routes(
        [{"name": "chat", "urls": [receiver.json_url("/chat")]}], [{"matchers": ['team="ops"'], "receiver": "chat"}]),
        alerts={"dedup": {"fence_grace": 1, "stagger": 1, "poll": 0.1}})

    async def unreachable(*_args: Any) -> Any:
        raise FenceUnavailable("JetStream is down (injected)")

    async with start_daemons(configs) as daemons:
        for daemon in daemons.values():  # the bus works, the KV does not
            runtime(daemon).nflog.read = unreachable
            runtime(daemon).nflog.write = unreachable
        await raise_everywhere(daemons, {"alertname": "RegionDown", "severity": "critical", "region": "x",
                                         "team": "ops"})
        await wait_received(receiver, lambda got: got, what="an unfenced delivery")
        await drained(daemons)
        assert len(receiver.received) == 1  # the first by rank sent and announced; the others skipped it
        assert sum(metric(d, "alerts_unfenced_sends_total", receiver="chat") for d in daemons.values()) == 1
        first = sorted(REGIONS)[0]
        assert metric(daemons[first], "alerts_unfenced_sends_total", receiver="chat") == 1
        assert (await daemons[first].status())["alerts"]["fence"] == "unavailable"


async def test_a_page_sent_without_the_kv_log_is_still_resolved_once_the_log_is_back(
        alerts_federation: Any, start_daemons: Any, receiver: RecordingReceiver) -> None:
    from meshd_plugins.alerts.nflog import FenceUnavailable

    configs = alerts_federation(REGIONS[:2], routes(
        [{"name": "chat", "urls": [receiver.json_url("/chat")]}], [{"matchers": ['team="ops"'], "receiver": "chat"}]),
        alerts={"dedup": {"fence_grace": 1, "stagger": 1, "poll": 0.1}})
    labels = {"alertname": "RegionDown", "severity": "critical", "region": "x", "team": "ops"}

    async def unreachable(*_args: Any) -> Any:
        raise FenceUnavailable("JetStream is down (injected)")

    async with start_daemons(configs) as daemons:
        for daemon in daemons.values():
            runtime(daemon).nflog.read = unreachable
            runtime(daemon).nflog.write = unreachable
        await raise_everywhere(daemons, labels)
        await wait_received(receiver, lambda got: got, what="the unfenced page")
        await drained(daemons)
        for daemon in daemons.values():  # the KV is back before the alert resolves
            del runtime(daemon).nflog.read, runtime(daemon).nflog.write
        await raise_everywhere(daemons, labels, status="resolved")
        await wait_received(receiver, lambda got: len(got) >= 2, what="the resolve")
        await drained(daemons)
        assert [r.body["title"].split("]")[0] for r in receiver.received] == ["[FIRING:1", "[RESOLVED"]
        # The log learnt what was sent while it was away, from the daemon that sent it.
        assert sum(metric(d, "alerts_unfenced_merged_total", receiver="chat") for d in daemons.values()) == 1


async def test_a_reload_reroutes_alerts(alerts_federation: Any, start_daemons: Any, make_receiver: Any) -> None:
    import yaml

    old, new = make_receiver(), make_receiver()
    configs = alerts_federation(REGIONS[:1], routes(
        [{"name": "chat", "urls": [old.json_url("/old")]}], [{"matchers": ['team="ops"'], "receiver": "chat"}]))
    path = Path(configs["us-east-1"]).parent / "alert_routes.yaml"
    async with start_daemons(configs) as daemons:
        [daemon] = daemons.values()
        await raise_everywhere(daemons, {"alertname": "A", "region": "x", "team": "ops"})
        await wait_received(old, lambda got: got, what="the first notification")
        path.write_text(yaml.safe_dump(routes(
            [{"name": "chat-v2", "urls": [new.json_url("/new")]}], [{"matchers": ['team="ops"'], "receiver": "chat-v2"}])))
        assert await daemon.reload()
        [got] = await wait_received(new, lambda got: got[:1], what="the regrouped alert at the new receiver")
        assert got.title == "[FIRING:1] A (region=x, team=ops)"
        path.write_text("route: {receiver: nobody}\nreceivers: [{name: somebody}]\n")
        assert not await daemon.reload()  # an invalid file is refused; the running one stays
        assert (await daemon.status())["alerts"]["receivers"][0]["name"] == "chat-v2"


async def test_receiver_urls_from_the_regions_secrets(alerts_federation: Any, start_daemons: Any,
                                                      receiver: RecordingReceiver) -> None:
    configs = alerts_federation(REGIONS[:1], routes(
        [{"name": "chat", "urls": [{"secret": "chat-url"}]}], [{"matchers": ['team="ops"'], "receiver": "chat"}]),
        alerts={"secrets": {"chat-url": receiver.json_url("/from-secret")}})
    async with start_daemons(configs) as daemons:
        await raise_everywhere(daemons, {"alertname": "A", "region": "x", "team": "ops"})
        [got] = await wait_received(receiver, lambda got: got[:1], what="delivery to the secret URL")
        assert got.path == "/from-secret"
