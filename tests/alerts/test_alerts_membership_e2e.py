"""End to end with the real membership plugin: SIGKILL one of seven regions, one page per route; back, one resolve.

Nothing here raises alerts by hand: every surviving daemon's membership
plugin declares the region dead and raises RegionDown itself, and the alerts
plugin must turn six identical alerts into one notification per matching
route.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml
from alerts_receiver import RecordingReceiver

from meshd.samples import sample_file
from meshd.testing import BUILTIN_PLUGINS, LocalFederation

pytestmark = [pytest.mark.nats, pytest.mark.slow]

REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ca-central-1", "me-south-1", "ap-southeast-1"]
DEAD = "ca-central-1"


def drained(fed: LocalFederation) -> bool:
    """Every running daemon's alert outbox is empty: each claim it delivered is marked done."""
    return all((fed.status(r) or {}).get("alerts", {}).get("outbox", {}).get("depth", 1) == 0
               for r in fed.regions if fed.running(r))


@pytest.fixture
def receivers() -> Iterator[tuple[RecordingReceiver, RecordingReceiver]]:
    with RecordingReceiver() as chat, RecordingReceiver() as pager:
        yield chat, pager


def test_sigkill_of_one_region_pages_once_and_resolves_once(tmp_path, receivers) -> None:  # type: ignore[no-untyped-def]
    chat, pager = receivers
    routes = tmp_path / "alert_routes.yaml"
    routes.write_text(yaml.safe_dump({
        "route": {"receiver": "nowhere", "group_by": ["alertname", "region"], "group_wait": "0s",
                  "group_interval": "1s", "repeat_interval": "1h",
                  "routes": [{"matchers": ['alertname="RegionDown"'], "receiver": "pager", "continue": True},
                             {"matchers": ['severity="critical"'], "receiver": "chat"}]},
        "receivers": [{"name": "nowhere"},
                      {"name": "pager", "urls": ["pagerduty://E2eKey@Api"], "pagerduty_url": pager.base_url},
                      {"name": "chat", "urls": [chat.json_url("/chat")]}],
    }))
    others = [p for p in BUILTIN_PLUGINS if p not in ("alerts", "membership")]
    settings = {"dedup": {"lease": 2, "poll": 0.1}, "delivery": {"backoff_initial": 0.1, "backoff_max": 0.5},
                "deadman": {"enabled": False}}
    with LocalFederation(tmp_path / "fed", regions=REGIONS, shared_files=[routes],
                         config={"alerts": settings, "plugins": {"disabled": others}}) as fed:
        fed.wait_for(lambda: all(fed.member_state(r, o) == "alive" for r in REGIONS for o in REGIONS),
                     timeout=60, what="everyone alive in everyone's view")
        fed.kill(DEAD)
        survivors = [r for r in REGIONS if r != DEAD]
        fed.wait_for(lambda: all(fed.member_state(r, DEAD) == "dead" for r in survivors), timeout=60,
                     what=f"{DEAD} dead in every survivor's view")
        pager.wait_for(lambda got: got, what="the page")
        chat.wait_for(lambda got: got, what="the chat message")

        fed.wait_for(lambda: drained(fed), what="every outbox to drain")
        raised = sum(fed.metric(r, "meshd_alerts_received_total", status="firing") for r in survivors)
        assert raised >= len(survivors)  # every survivor raised it...
        assert [r.body["event_action"] for r in pager.received] == ["trigger"]  # ...one page
        assert [r.title for r in chat.received] == [f"[FIRING:1] Region {DEAD} is down"]

        fed.start_daemon(DEAD)
        fed.wait_for(lambda: all(fed.member_state(r, DEAD) == "alive" for r in survivors), timeout=60,
                     what=f"{DEAD} alive again")
        pager.wait_for(lambda got: len(got) >= 2, what="the resolve")
        chat.wait_for(lambda got: len(got) >= 2, what="the resolved chat message")
        fed.wait_for(lambda: drained(fed), what="every outbox to drain")
        assert [r.body["event_action"] for r in pager.received] == ["trigger", "resolve"]
        assert pager.received[0].body["dedup_key"] == pager.received[1].body["dedup_key"]
        assert [r.title for r in chat.received] == [f"[FIRING:1] Region {DEAD} is down",
                                                    f"[RESOLVED] Region {DEAD} is down"]


def test_a_committed_failover_pages_once_and_its_failback_resolves_it(tmp_path, receivers) -> None:  # type: ignore[no-untyped-def]
    """The whole chain in real processes: SIGKILL -> membership -> signed votes -> KV commit -> every
    survivor applies it and raises FailoverCommitted -> one page; back -> failback -> one resolve."""
    _, pager = receivers
    regions = ["eu-west-1", "eu-central-1", "us-east-1"]
    routes = tmp_path / "alert_routes.yaml"
    routes.write_text(yaml.safe_dump({
        "route": {"receiver": "nowhere", "group_by": ["alertname", "region"], "group_wait": "30s",
                  "group_interval": "1s", "repeat_interval": "1h",
                  "routes": [{"matchers": ['alertname="FailoverCommitted"'], "receiver": "pager",
                              "group_wait": "0s"}]},
        "receivers": [{"name": "nowhere"},
                      {"name": "pager", "urls": ["pagerduty://E2eKey@Api"], "pagerduty_url": pager.base_url}],
    }))
    dr = tmp_path / "dr_config.yaml"
    dr_config = yaml.safe_load(sample_file("dr_config.yaml").read_text())
    dr_config["regions"] = {"eu-west-1": {"pair": "eu-central-1"}, "eu-central-1": {"pair": "eu-west-1"},
                            "us-east-1": {}}
    dr.write_text(yaml.safe_dump(dr_config))
    config = {"alerts": {"dedup": {"lease": 2, "poll": 0.1}, "deadman": {"enabled": False}},
              "failover": {"hold_down": "2s", "flap_window": 0},
              "plugins": {"disabled": ["health", "keys", "metering", "routing"]}}
    with LocalFederation(tmp_path / "fed", regions=regions, shared_files=[routes, dr], config=config) as fed:
        fed.wait_for(lambda: all(fed.member_state(r, o) == "alive" for r in regions for o in regions),
                     timeout=60, what="everyone alive in everyone's view")
        fed.kill("eu-central-1")
        page = pager.wait_for(lambda got: got, what="the FailoverCommitted page")[0].body
        assert page["event_action"] == "trigger"
        assert "eu-central-1" in page["payload"]["summary"] and "eu-west-1" in page["payload"]["summary"]
        # The page may come from the other survivor before this one applied the decision.
        decisions = fed.wait_for(lambda: fed.status("us-east-1")["decisions"], what="us-east-1 to apply it")
        assert [(d["region"], d["action"], d["target"]) for d in decisions] == [("eu-central-1", "failover",
                                                                               "eu-west-1")]
        # Both survivors applied it and raised the alert; the receiver still got it once.
        fed.wait_for(lambda: all(fed.metric(r, "meshd_alerts_received_total", status="firing") >= 1
                                 for r in ("eu-west-1", "us-east-1")), what="both survivors to raise it")

        fed.start_daemon("eu-central-1")
        pager.wait_for(lambda got: len(got) >= 2, timeout=60, what="the failback's resolve")
        assert [r.body["event_action"] for r in pager.received] == ["trigger", "resolve"]
        assert pager.received[1].body["dedup_key"] == page["dedup_key"]
        actions = fed.wait_for(lambda: len(a := [d["action"] for d in fed.status("eu-west-1")["decisions"]
                                                 if d["region"] == "eu-central-1"]) >= 2 and a,
                               what="eu-west-1 to apply the failback")
        assert actions == ["failover", "failback"]

        # A daemon restarted after the incident replays both decisions: it must not page for the
        # failover again, nor leave the notification log believing it still fires. (Killed only once
        # its deliveries are marked done: a sender killed in between is resent by a peer, by design.)
        fed.wait_for(lambda: drained(fed), what="every outbox to drain")
        fed.kill("us-east-1")
        fed.start_daemon("us-east-1")
        fed.wait_for(lambda: (fed.status("us-east-1") or {}).get("failover", {}).get("kv", {}).get("synced"),
                     what="us-east-1 to read the decisions back")
        fed.wait_for(lambda: all(fed.member_state(r, o) == "alive" for r in regions for o in regions),
                     timeout=60, what="everyone alive again")
        fed.kill("eu-central-1")
        pager.wait_for(lambda got: len(got) >= 3, timeout=60, what="the second incident's page")
        assert [r.body["event_action"] for r in pager.received] == ["trigger", "resolve", "trigger"], \
            [(r.at, r.body) for r in pager.received]
