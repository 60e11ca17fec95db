"""The alerts plugin's logic without a bus: grouping, inhibition, silences, time intervals, dedup rules, text."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from meshd.alerting import Alert
from meshd.i18n import Translator
from meshd_plugins.alerts.dispatcher import Dispatcher, InvalidAlert, check_alert
from meshd_plugins.alerts.nflog import LogEntry, effective, needs_update
from meshd_plugins.alerts.outbox import Outbox
from meshd_plugins.alerts.retry import RetryPolicy
from meshd_plugins.alerts.routes import load_routes
from meshd_plugins.alerts.senders import classify_apprise, from_status, parse_retry_after
from meshd_plugins.alerts.silences import SilenceError, SilenceStore, new_silence
from meshd_plugins.alerts.targets import TargetError, parse_target
from meshd_plugins.alerts.templates import AlertView, render, summarize_alert
from meshd_plugins.alerts.timeintervals import TimeInterval

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC).timestamp()  # a Monday, noon UTC

ROUTES = {
    "route": {
        "receiver": "default", "group_by": ["alertname", "region"],
        "group_wait": "10s", "group_interval": "1m", "repeat_interval": "1h",
        "routes": [
            {"matchers": ['test="muted"'], "receiver": "default", "mute_time_intervals": ["weekdays"]},
            {"matchers": ['test="active"'], "receiver": "default", "active_time_intervals": ["weekends"]},
        ],
    },
    "receivers": [{"name": "default"}],
    "inhibit_rules": [{"source_matchers": ['alertname="RegionDown"'],
                       "target_matchers": ['alertname="ProbeFailing"'], "equal": ["region"]}],
    "time_intervals": [
        {"name": "weekdays", "time_intervals": [{"weekdays": ["monday:friday"]}]},
        {"name": "weekends", "time_intervals": [{"weekdays": ["saturday", "sunday"]}]},
    ],
}


@pytest.fixture
def dispatcher(tmp_path: Path) -> Dispatcher:
    path = tmp_path / "alert_routes.yaml"
    path.write_text(yaml.safe_dump(ROUTES))
    return Dispatcher(load_routes(path), SilenceStore())


def alert(name: str, region: str = "eu-west-1", status: str = "firing", **labels: str) -> Alert:
    return Alert(labels={"alertname": name, "region": region, "severity": "critical", **labels},
                 annotations={"summary": f"{name} in {region}"}, status=status)  # type: ignore[arg-type]


def flush_all(d: Dispatcher, now: float, mono: float) -> list[dict]:
    return [c for g in d.due(mono) if (c := d.flush(g, now, mono)) is not None]


# ---------------------------------------------------------------- grouping and timing


def test_group_wait_then_group_interval(dispatcher: Dispatcher) -> None:
    d = dispatcher
    d.ingest(alert("RegionDown", "eu-west-1"), T0, 0.0)
    d.ingest(alert("RegionDown", "eu-west-1", extra="x"), T0, 1.0)  # same group (group_by alertname, region)
    d.ingest(alert("RegionDown", "us-east-1"), T0, 2.0)             # another group
    assert flush_all(d, T0 + 5, 5.0) == []                          # group_wait 10 s not over
    first = flush_all(d, T0 + 10, 10.0)
    assert len(first) == 1 and len(first[0]["firing"]) == 2          # eu-west-1's two alerts together
    assert first[0]["group_labels"] == {"alertname": "RegionDown", "region": "eu-west-1"}
    assert len(flush_all(d, T0 + 12, 12.0)) == 1                     # us-east-1 after its own wait
    # Nothing changed: no new candidate at the next group_interval, until repeat_interval.
    assert flush_all(d, T0 + 70, 70.0) == []
    assert len(flush_all(d, T0 + 3610, 3610.0)) == 1                 # the repeat


def test_resolved_alerts_are_reported_once_then_forgotten(dispatcher: Dispatcher) -> None:
    d = dispatcher
    d.ingest(alert("RegionDown"), T0, 0.0)
    assert len(flush_all(d, T0 + 10, 10.0)) == 1
    assert d.ingest(alert("RegionDown", status="resolved"), T0 + 20, 20.0)
    [content] = flush_all(d, T0 + 70, 70.0)
    assert content["firing"] == [] and len(content["resolved"]) == 1
    assert content["alerts"][content["resolved"][0]]["ends_at"] == T0 + 20
    assert d.groups == {} and d.alerts == {}                         # nothing left to tell
    assert not d.ingest(alert("NeverSeen", status="resolved"), T0, 80.0)  # resolving the unknown: ignored


def test_inhibition_holds_only_the_same_region(dispatcher: Dispatcher) -> None:
    d = dispatcher
    d.ingest(alert("ProbeFailing", "eu-west-1", probe="api"), T0, 0.0)
    d.ingest(alert("ProbeFailing", "us-east-1", probe="api"), T0, 0.0)
    d.ingest(alert("RegionDown", "eu-west-1"), T0, 0.0)
    contents = {tuple(sorted(c["group_labels"].items())): c for c in flush_all(d, T0 + 10, 10.0)}
    assert (("alertname", "ProbeFailing"), ("region", "us-east-1")) in contents
    assert (("alertname", "ProbeFailing"), ("region", "eu-west-1")) not in contents  # held back
    states = {(s.tracked.alert.name, s.tracked.alert.labels["region"]): s.state for s in d.states(T0)}
    assert states[("ProbeFailing", "eu-west-1")] == "inhibited"
    assert states[("ProbeFailing", "us-east-1")] == "firing"
    # The source resolves: the held alert goes out at the next interval.
    d.ingest(alert("RegionDown", "eu-west-1", status="resolved"), T0 + 20, 20.0)
    later = [c for c in flush_all(d, T0 + 70, 70.0) if c["group_labels"]["alertname"] == "ProbeFailing"
             and c["group_labels"]["region"] == "eu-west-1"]
    assert len(later) == 1 and len(later[0]["firing"]) == 1


def test_silenced_alerts_are_withheld_and_reported_resolved_to_those_told(dispatcher: Dispatcher) -> None:
    d = dispatcher
    d.ingest(alert("RegionDown"), T0, 0.0)
    [told] = flush_all(d, T0 + 10, 10.0)
    silence = new_silence(['alertname="RegionDown"'], duration=3600, comment="maintenance", created_by="ana",
                          now=T0 + 15)
    d.silences.merge(silence)
    [content] = flush_all(d, T0 + 70, 70.0)
    assert content["firing"] == [] and list(content["silenced"]) == told["firing"]
    assert "maintenance" in content["silenced"][told["firing"][0]]
    # A receiver that heard it firing hears it resolved; one that did not hears nothing.
    entry = LogEntry(1, tuple(told["firing"]), (), T0 + 10, "us-east-1", done=True)
    firing, resolved = effective(content, entry)
    assert firing == [] and resolved == told["firing"]
    assert needs_update(entry, firing, resolved, send_resolved=True, repeat_interval=3600, now=T0 + 70)
    assert effective(content, None) == ([], [])
    assert not needs_update(None, [], [], send_resolved=True, repeat_interval=3600, now=T0 + 70)
    assert [s.state for s in d.states(T0 + 70)] == ["silenced"]
    assert d.silences.matching({"alertname": "RegionDown"}, T0 + 3616) is None  # expired


def test_silences_need_a_real_matcher_and_a_reason() -> None:
    with pytest.raises(SilenceError, match="matchers"):
        new_silence(['team=~".*"'], duration=60, comment="x", created_by="a", now=T0)
    with pytest.raises(SilenceError, match="comment"):
        new_silence(['alertname="X"'], duration=60, comment=" ", created_by="a", now=T0)
    with pytest.raises(SilenceError, match="duration"):
        new_silence(['alertname="X"'], duration=0, comment="x", created_by="a", now=T0)
    s = new_silence(['alertname="X"'], duration=60, comment="x", created_by="a", now=T0)
    store = SilenceStore()
    assert store.merge(s) and not store.merge(s)                      # same version: no change
    assert store.merge(s.expired(T0 + 1)) and store.silences[s.id].state(T0 + 2) == "expired"


def test_mute_and_active_time_intervals(dispatcher: Dispatcher) -> None:
    d = dispatcher
    d.ingest(alert("A", test="muted"), T0, 0.0)
    d.ingest(alert("B", test="active"), T0, 0.0)
    assert flush_all(d, T0 + 10, 10.0) == []                         # Monday: muted, and not active
    assert {s.tracked.alert.name for s in d.states(T0)} == {"A", "B"}  # the alerts stay
    saturday = T0 + 5 * 86400
    names = {next(iter(c["alerts"].values()))["labels"]["alertname"] for c in flush_all(d, saturday, 70.0)}
    assert names == {"A", "B"}


def test_time_interval_specs() -> None:
    spec = TimeInterval.model_validate({"name": "x", "time_intervals": [{
        "times": [{"start_time": "22:00", "end_time": "24:00"}], "weekdays": ["monday:friday"],
        "days_of_month": ["-8:-1"], "months": ["november:december"], "years": ["2026"],
        "location": "Europe/Berlin"}]})
    at = lambda s: datetime.fromisoformat(s)  # noqa: E731
    assert spec.contains(at("2026-11-23T21:30:00+00:00"))       # 22:30 in Berlin, Monday the 23rd (end-7)
    assert not spec.contains(at("2026-11-20T21:30:00+00:00"))   # Friday the 20th: not in the last 8 days
    assert not spec.contains(at("2026-11-23T20:30:00+00:00"))   # 21:30 in Berlin
    assert spec.contains(at("2026-11-24T21:30:00+00:00"))       # Tuesday the 24th
    assert not spec.contains(at("2026-11-22T21:30:00+00:00"))   # Sunday
    assert not spec.contains(at("2027-11-23T21:30:00+00:00"))   # 2027


# ---------------------------------------------------------------- the federation's dedup rule


def test_needs_update_follows_alertmanager() -> None:
    e = LogEntry(3, ("a", "b"), ("c",), at=1000.0, by="eu-west-1", done=True)
    kw = {"send_resolved": True, "repeat_interval": 3600.0, "now": 1100.0}
    assert needs_update(None, ["a"], [], **kw)
    assert not needs_update(None, [], ["a"], **kw)            # never told it fired: no resolve
    assert not needs_update(e, ["a", "b"], ["c"], **kw)       # said already
    assert needs_update(e, ["a", "b", "d"], [], **kw)         # something new fires
    assert needs_update(e, [], ["a", "b"], **kw)              # all over
    assert needs_update(e, ["a"], ["b"], **kw)                # b resolved, receiver wants resolves
    assert not needs_update(e, ["a"], ["b"], **{**kw, "send_resolved": False})
    assert needs_update(e, ["a", "b"], [], **{**kw, "now": 4600.0})  # repeat_interval
    gone = LogEntry(4, (), ("a",), at=1000.0, by="x", done=True)
    assert not needs_update(gone, [], ["a"], **kw)           # the resolve went out once


def test_log_entries_round_trip() -> None:
    e = LogEntry(7, ("a",), ("b",), 12.5, "eu-west-1", done=False, content={"x": [1]}, renewed=13.0)
    assert LogEntry.from_bytes(e.to_bytes()) == e


# ---------------------------------------------------------------- bad alerts


@pytest.mark.parametrize("bad, reason", [
    (Alert(labels={}), "no_alertname"),
    (Alert(labels={"alertname": "A", "bad-label": "x"}), "bad_label"),
    (Alert(labels={"alertname": "A", "x": 1}), "bad_label"),  # type: ignore[dict-item]
    (Alert(labels={"alertname": "A"}, status="open"), "bad_status"),  # type: ignore[arg-type]
    (Alert(labels={"alertname": "A"}, annotations={"summary": "x" * 20000}), "bad_annotation"),
    (Alert(labels={"alertname": "A"}, starts_at=float("nan")), "bad_time"),
    ("not an alert", "type"),
])
def test_malformed_alerts_are_refused_with_a_reason(bad: object, reason: str) -> None:
    with pytest.raises(InvalidAlert) as caught:
        check_alert(bad)
    assert caught.value.reason == reason


# ---------------------------------------------------------------- text


def view(name: str, **labels: str) -> AlertView:
    return AlertView("fp" + name, {"alertname": name, **labels}, {"summary": "raw summary",
                                                                  "runbook_url": "https://runbooks/x"},
                     "firing", T0, None)


def test_a_german_receiver_reads_german() -> None:
    t = Translator("de")
    out = render(t, firing=[view("RegionDown", region="eu-west-1")], resolved=[], group_labels={},
                 max_alerts=10, title_limit=250, body_limit=4000, region="us-east-1", federation="acme")
    assert out.title == "[AUSGELÖST:1] Region eu-west-1 ist ausgefallen"
    assert "Gesendet von meshd in us-east-1" in out.body and "Anleitung: https://runbooks/x" in out.body
    assert summarize_alert(Translator("ar"), view("RegionDown", region="eu-west-1")) == "المنطقة eu-west-1 متوقفة"
    # An alert the catalog does not know keeps the summary its plugin wrote.
    assert summarize_alert(t, view("SomethingElse")) == "raw summary"


def test_a_big_group_is_summarized_and_cut_to_the_limits() -> None:
    t = Translator("en")
    firing = [view("ProbeFailing", region=f"r{i}", probe="x" * 300) for i in range(40)]
    out = render(t, firing=firing, resolved=[], group_labels={"alertname": "ProbeFailing"}, max_alerts=5,
                 title_limit=1024, body_limit=1200, region="eu-west-1", federation="acme")
    assert len(out.title) <= 1024 and out.title.startswith("[FIRING:40] ProbeFailing ×40")
    assert "… and 35 more" in out.body or "[message truncated]" in out.body
    assert len(out.body) <= 1200 and out.body.count("•") <= 5
    unknown = AlertView("fp", {"alertname": "X", "region": "r" * 5000}, {}, "firing", T0, None)
    huge = render(t, firing=[unknown], resolved=[], group_labels={}, max_alerts=5,
                  title_limit=1024, body_limit=300, region="eu-west-1", federation="acme")
    assert len(huge.title) == 1024 and huge.title.endswith("…")     # PagerDuty's summary limit
    assert len(huge.body) <= 300 and huge.body.endswith("[message truncated]")


# ---------------------------------------------------------------- delivery policy


def test_backoff_is_exponential_jittered_capped_and_honours_retry_after() -> None:
    p = RetryPolicy(initial=1.0, maximum=8.0, jitter=0.2, retry_after_max=30.0, rate_limited_min=5.0)
    rng = random.Random(1)
    delays = [p.delay(n, rng=rng) for n in range(1, 8)]
    for n, d in enumerate(delays, start=1):
        base = min(8.0, 2 ** (n - 1))
        assert base * 0.8 <= d <= base
    assert p.delay(1, retry_after=12.0, rng=rng) == 12.0
    assert p.delay(1, retry_after=3600.0, rng=rng) == 30.0            # capped
    assert p.delay(1, rate_limited=True, rng=rng) == 5.0              # 429 without Retry-After


def test_http_outcomes_are_classified() -> None:
    assert from_status(202).ok
    r = from_status(429, {"retry-after": "7"})
    assert r.retryable and r.retry_after == 7.0
    assert from_status(503).retryable and from_status(500).retryable and from_status(408).retryable
    assert not from_status(400).retryable and not from_status(403).retryable and not from_status(404).retryable
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=datetime(2015, 10, 21, 7, 27, 30,
                                                                         tzinfo=UTC).timestamp()) == 30.0
    assert parse_retry_after("soon") is None
    # apprise only says True/False; the status comes from its log line.
    assert not classify_apprise(False, ["Failed to send JSON POST notification: Bad Request, error=400."]).retryable
    assert classify_apprise(False, ["Failed to send ... Service Unavailable, error=503."]).retryable
    assert classify_apprise(False, ["A Connection error occurred sending JSON notification"]).retryable


def test_receiver_urls_are_parsed_without_leaking_tokens() -> None:
    pd = parse_target("pagerduty://Abc123RoutingKeyXYZ@ApiKey999/db/primary?region=eu")
    assert (pd.kind, pd.key, pd.region, pd.source, pd.component) == ("pagerduty", "Abc123RoutingKeyXYZ", "eu",
                                                                     "db", "primary")
    assert pd.title_limit == 1024 and "Abc123RoutingKeyXYZ" not in pd.redacted
    assert "Abc123RoutingKeyXYZ" in pd.secret_parts and "Abc123RoutingKeyXYZ" not in repr(pd)
    og = parse_target("opsgenie://GenieKey0123456789")
    assert (og.kind, og.key, og.title_limit) == ("opsgenie", "GenieKey0123456789", 130)
    slack = parse_target("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general")
    assert slack.kind == "apprise" and "TIiajkdnlazkcOXrIdevi7FQ" not in slack.redacted
    assert "TIiajkdnlazkcOXrIdevi7FQ" in slack.secret_parts
    with pytest.raises(TargetError) as caught:
        parse_target("nosuchscheme://secret-token-123/x")
    assert "secret-token-123" not in str(caught.value)


def test_the_outbox_is_durable_and_ordered(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "alerts.sqlite")
    box.open()
    a = box.add(key="k", receiver="r", group_key="g", content={"firing": ["x"]})
    b = box.add(key="k", receiver="r", group_key="g", content={"firing": []})
    taken = box.add(key="k", receiver="r", group_key="g", content={"firing": ["y"]}, claim_seq=4,
                    origin="takeover")
    box.close()
    box = Outbox(tmp_path / "alerts.sqlite")
    box.open()                                                       # as after a restart
    assert box.pending_keys() == ["k"]
    assert box.head("k").id == taken.id                              # claimed rows first
    box.finish(box.head("k"), "sent")
    assert box.head("k").id == a.id and box.newer_candidate("k", a.id)
    box.finish(box.head("k"), "superseded")
    assert box.head("k").id == b.id and box.stats()[0] == 1
    assert box.claimed("k", 4).outcome == "sent"
    assert oct((tmp_path / "alerts.sqlite").stat().st_mode & 0o777) == "0o600"



def test_the_outbox_knows_without_sqlite_which_keys_have_an_unmerged_unfenced_send(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "alerts.sqlite")
    box.open()
    assert not box.may_have_unfenced("k")
    box.record_unfenced("k", ["x"], [], 10.0)
    box.record_unfenced("k", ["x", "y"], [], 20.0)                   # a newer send of the same group
    assert box.may_have_unfenced("k") and not box.may_have_unfenced("other")
    box.forget_unfenced("k", 10.0)                                   # merged the older record only
    assert box.may_have_unfenced("k") and box.unfenced_told("k") == (["x", "y"], [], 20.0)
    box.close()
    box = Outbox(tmp_path / "alerts.sqlite")
    box.open()                                                       # as after a restart
    assert box.may_have_unfenced("k")
    box.forget_unfenced("k", 20.0)
    assert not box.may_have_unfenced("k") and box.unfenced_told("k") is None

def test_resolve_timeout_ends_alerts_nobody_refreshes(tmp_path: Path) -> None:
    path = tmp_path / "alert_routes.yaml"
    path.write_text(yaml.safe_dump({**ROUTES, "global": {"resolve_timeout": "5m"}}))
    d = Dispatcher(load_routes(path), SilenceStore())
    d.ingest(alert("ProbeFailing", probe="db"), T0, 0.0)
    d.ingest(alert("ProbeFailing", "us-east-1", probe="db"), T0, 0.0)
    d.ingest(alert("ProbeFailing", "us-east-1", probe="db"), T0 + 200, 200.0)  # refreshed
    stale = d.expire_stale(T0 + 301)
    assert [a.labels["region"] for a in stale] == ["eu-west-1"] and stale[0].status == "resolved"


def test_repeats_count_from_when_the_federation_notified(dispatcher: Dispatcher) -> None:
    d = dispatcher
    d.ingest(alert("RegionDown"), T0, 0.0)
    [content] = flush_all(d, T0 + 10, 10.0)
    group = next(iter(d.groups.values()))
    d.notified_at[group.notification_key] = T0 + 40   # claimed 30 s later (it waited behind a peer's claim)
    assert flush_all(d, T0 + 3615, 3615.0) == []      # an hour after our candidate: too early for the log
    assert len(flush_all(d, T0 + 3675, 3675.0)) == 1  # the first flush an hour after the notification
