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

from meshd.testing import BUILTIN_PLUGINS, LocalFederation
from meshd_plugins.alerts.testing import RecordingReceiver

pytestmark = [pytest.mark.nats, pytest.mark.slow]

REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ca-central-1", "me-south-1", "ap-southeast-1"]
DEAD = "ca-central-1"


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

        def drained() -> bool:
            return all((fed.status(r) or {}).get("alerts", {}).get("outbox", {}).get("depth", 1) == 0
                       for r in REGIONS if fed.running(r))

        fed.wait_for(drained, what="every outbox to drain")
        raised = sum(fed.metric(r, "meshd_alerts_received_total", status="firing") for r in survivors)
        assert raised >= len(survivors)  # every survivor raised it...
        assert [r.body["event_action"] for r in pager.received] == ["trigger"]  # ...one page
        assert [r.title for r in chat.received] == [f"[FIRING:1] Region {DEAD} is down"]

        fed.start_daemon(DEAD)
        fed.wait_for(lambda: all(fed.member_state(r, DEAD) == "alive" for r in survivors), timeout=60,
                     what=f"{DEAD} alive again")
        pager.wait_for(lambda got: len(got) >= 2, what="the resolve")
        chat.wait_for(lambda got: len(got) >= 2, what="the resolved chat message")
        fed.wait_for(drained, what="every outbox to drain")
        assert [r.body["event_action"] for r in pager.received] == ["trigger", "resolve"]
        assert pager.received[0].body["dedup_key"] == pager.received[1].body["dedup_key"]
        assert [r.title for r in chat.received] == [f"[FIRING:1] Region {DEAD} is down",
                                                    f"[RESOLVED] Region {DEAD} is down"]
