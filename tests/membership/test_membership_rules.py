"""The protocol's pure parts: precedence rules, suspicion timeouts, piggyback queue, wire checks, config."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshd.config import ConfigError
from meshd.members import MemberState
from meshd.plugins import Hooks
from meshd.testing import BUILTIN_PLUGINS, write_federation
from meshd_plugins.membership import wire
from meshd_plugins.membership.gossip import TransmitQueue
from meshd_plugins.membership.settings import PROFILES, MembershipConfig
from meshd_plugins.membership.suspicion import Suspicion, suspicion_timeout
from meshd_plugins.membership.table import Claim, MemberTable

ALIVE, SUSPECT, DEAD, LEFT = MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD, MemberState.LEFT
REGIONS = {"a", "b", "c"}


def table_with(state: MemberState, inc: int) -> MemberTable:
    table = MemberTable("self")
    table.apply(Claim("a", state, inc))
    return table


# ---------------------------------------------------------------- precedence


@pytest.mark.parametrize("current, claim, expect", [
    # alive needs a strictly higher incarnation to undo anything
    ((SUSPECT, 3), (ALIVE, 3), (SUSPECT, 3)),
    ((SUSPECT, 3), (ALIVE, 4), (ALIVE, 4)),
    ((DEAD, 3), (ALIVE, 3), (DEAD, 3)),
    ((DEAD, 3), (ALIVE, 4), (ALIVE, 4)),
    ((LEFT, 3), (ALIVE, 4), (ALIVE, 4)),
    # suspect beats alive at the same incarnation, never dead or left
    ((ALIVE, 3), (SUSPECT, 3), (SUSPECT, 3)),
    ((ALIVE, 3), (SUSPECT, 2), (ALIVE, 3)),
    ((DEAD, 3), (SUSPECT, 3), (DEAD, 3)),
    ((LEFT, 3), (SUSPECT, 3), (LEFT, 3)),
    # dead beats alive and suspect at the same incarnation
    ((ALIVE, 3), (DEAD, 3), (DEAD, 3)),
    ((SUSPECT, 3), (DEAD, 3), (DEAD, 3)),
    ((ALIVE, 4), (DEAD, 3), (ALIVE, 4)),
    # left is final for an incarnation, and a goodbye overrides a death
    ((DEAD, 3), (LEFT, 3), (LEFT, 3)),
    ((LEFT, 3), (DEAD, 3), (LEFT, 3)),
    ((LEFT, 3), (DEAD, 4), (LEFT, 4)),
])
def test_precedence(current, claim, expect) -> None:
    table = table_with(*current)
    table.apply(Claim("a", claim[0], claim[1], "b"))
    m = table.get("a")
    assert (m.state, m.incarnation) == expect


def test_changes_report_transitions_and_confirmations() -> None:
    table = MemberTable("self")
    first = table.apply(Claim("a", ALIVE, 1, health="healthy"))
    assert first.previous is None and first.transition and first.member.health == "healthy"
    assert table.apply(Claim("a", ALIVE, 1)) is None  # nothing new
    suspicion = table.apply(Claim("a", SUSPECT, 1, "b"))
    assert suspicion.transition and not suspicion.confirmation
    again = table.apply(Claim("a", SUSPECT, 1, "c"))
    assert again.confirmation and not again.transition
    health = table.apply(Claim("a", ALIVE, 2, health="degraded"))
    assert health.transition and health.member.health == "degraded"
    detail = table.apply(Claim("a", ALIVE, 2, health="down"))
    assert not detail.transition and detail.member.health == "down"


def test_claims_about_self_are_not_applied() -> None:
    with pytest.raises(ValueError):
        MemberTable("self").apply(Claim("self", DEAD, 9))


states = st.sampled_from([ALIVE, SUSPECT, DEAD, LEFT])
claims = st.lists(st.tuples(states, st.integers(0, 5)), min_size=1, max_size=30)


@given(claims)
def test_incarnation_never_goes_back_and_alive_needs_news(sequence) -> None:
    table = MemberTable("self")
    for state, inc in sequence:
        before = table.get("a")
        table.apply(Claim("a", state, inc, "b"))
        after = table.get("a")
        assert before is None or after.incarnation >= before.incarnation
        if before is not None and after.state == ALIVE and before.state != ALIVE:
            assert after.incarnation > before.incarnation


# ---------------------------------------------------------------- Lifeguard suspicion


def test_suspicion_shrinks_with_confirmations() -> None:
    floor, ceiling, k = 1.0, 6.0, 3
    timeouts = [suspicion_timeout(floor, ceiling, c, k) for c in range(6)]
    assert timeouts[0] == ceiling
    assert all(a > b for a, b in zip(timeouts[:3], timeouts[1:4]))
    assert timeouts[3] == timeouts[5] == floor
    assert suspicion_timeout(floor, ceiling, 1, 3) == pytest.approx(6 - 5 * math.log(2) / math.log(4))
    assert suspicion_timeout(floor, ceiling, 0, 0) == floor  # no confirmations possible: the floor


def test_suspicion_counts_each_accuser_once() -> None:
    s = Suspicion("a", 1, started=100.0, floor=1.0, ceiling=6.0, k=3, accusers={"b"})
    assert s.deadline == 106.0
    assert s.confirm("c") and not s.confirm("c") and not s.confirm("b")
    assert s.confirmations == 1 and s.deadline < 106.0


def test_suspicion_bounds_grow_with_log_members() -> None:
    lan = PROFILES["lan"]
    assert lan.suspicion_bounds(7) == (1.0, 6.0)
    floor50, _ = lan.suspicion_bounds(50)
    assert floor50 == pytest.approx(2 * math.log10(50) * 0.5)


# ---------------------------------------------------------------- piggyback queue


def test_queue_sends_fresh_news_first_and_a_bounded_number_of_times() -> None:
    q = TransmitQueue()
    q.push(Claim("a", SUSPECT, 1, "b"))
    q.push(Claim("b", ALIVE, 2))
    assert {c.region for c in q.take(1, limit=2)} == {"b"}  # newest first
    assert {c.region for c in q.take(1, limit=2)} == {"a"}  # then the least sent
    q.take(5, limit=2)
    assert len(q) == 0


def test_queue_keeps_the_strongest_claim_per_region_and_skips_the_receiver() -> None:
    q = TransmitQueue()
    q.push(Claim("a", DEAD, 3, "b"))
    q.push(Claim("a", ALIVE, 3))  # weaker at the same incarnation: ignored
    assert q.take(5, limit=9) == [Claim("a", DEAD, 3, "b")]
    q.push(Claim("a", ALIVE, 4))  # newer life wins
    assert q.take(5, limit=9, exclude="a") == []
    assert q.take(5, limit=9) == [Claim("a", ALIVE, 4)]


# ---------------------------------------------------------------- wire


def test_wire_round_trip() -> None:
    original = [Claim("a", SUSPECT, 7, "b"), Claim("c", ALIVE, 1, None, "degraded")]
    body = {"g": wire.encode_claims(original)}
    assert wire.decode_claims(body, "g", REGIONS) == original


@pytest.mark.parametrize("body, reason", [
    ({"g": "x"}, "bad_field"),
    ({"g": [{"r": "zz", "s": "alive", "i": 1}]}, "unknown_region"),
    ({"g": [{"r": "a", "s": "isolated", "i": 1}]}, "bad_state"),
    ({"g": [{"r": "a", "s": "alive", "i": -1}]}, "bad_incarnation"),
    ({"g": [{"r": "a", "s": "alive", "i": True}]}, "bad_incarnation"),
    ({"g": [{"r": "a", "s": "alive", "i": 1, "h": "fine"}]}, "bad_field"),
    ({"g": [{"r": "a", "s": "alive", "i": 1, "x": 1}]}, "bad_field"),
    ({"g": [{"r": "a", "s": "alive", "i": 1}] * (wire.MAX_CLAIMS + 1)}, "too_many_claims"),
])
def test_wire_rejects_bad_claims_naming_the_field(body, reason) -> None:
    with pytest.raises(wire.BadMessage) as exc:
        wire.decode_claims(body, "g", REGIONS)
    assert exc.value.reason == reason
    assert "g" in exc.value.detail


def test_wire_skips_claims_about_regions_it_does_not_know_when_asked() -> None:
    skipped: list[str] = []
    body = {"g": [{"r": "zz", "s": "alive", "i": 1}, {"r": "a", "s": "alive", "i": 2}]}
    assert wire.decode_claims(body, "g", REGIONS, skipped) == [Claim("a", ALIVE, 2)]
    assert len(skipped) == 1 and "'zz'" in skipped[0]
    with pytest.raises(wire.BadMessage):  # a malformed claim still rejects the whole message
        wire.decode_claims({"g": [{"r": "a", "s": "alive", "i": "x"}]}, "g", REGIONS, skipped)


def test_wire_rejects_a_bad_view_and_life() -> None:
    with pytest.raises(wire.BadMessage):
        wire.decode_view({"you": {"s": "dead", "i": "3"}})
    with pytest.raises(wire.BadMessage):
        wire.sender_life({"inc": 2**60})
    assert wire.decode_view({}) is None
    assert wire.sender_life({"inc": 4, "h": "down"}) == (4, "down")


# ---------------------------------------------------------------- config


def test_profiles_and_overrides() -> None:
    assert MembershipConfig().timing() == PROFILES["lan"]
    wan = MembershipConfig(profile="wan", probe_timeout="800ms").timing()
    assert wan.probe_interval == PROFILES["wan"].probe_interval and wan.probe_timeout == 0.8


def _load(tmp_path: Path, section: dict) -> object:
    tmp_path.mkdir()
    configs = write_federation(tmp_path, ["us-east-1", "eu-west-1"], "nats://127.0.0.1:4222",
                               patch={"membership": section})
    hooks = Hooks.load(blocked=[p for p in BUILTIN_PLUGINS if p != "membership"])
    return hooks.load_config(configs["us-east-1"])


def test_config_section_is_validated_with_file_key_and_line(tmp_path: Path) -> None:
    config = _load(tmp_path / "ok", {"profile": "wan", "probe_interval": "3s"})
    assert config.plugin("membership").timing().probe_interval == 3.0
    with pytest.raises(ConfigError) as bad:
        _load(tmp_path / "typo", {"probe_intervall": "1s"})
    issue = bad.value.issues[0]
    assert issue.keypath == ("membership", "probe_intervall") and issue.line
    with pytest.raises(ConfigError) as bad:
        _load(tmp_path / "order", {"probe_interval": "200ms"})
    assert "probe_timeout" in str(bad.value) and "probe_interval" in str(bad.value)
    with pytest.raises(ConfigError) as bad:
        _load(tmp_path / "profile", {"profile": "moon"})
    assert bad.value.issues[0].keypath == ("membership", "profile")


# ---------------------------------------------------------------- RegionDown


def _observer(lang: str = "en", alerts: bool = True) -> object:
    from types import SimpleNamespace

    daemon = SimpleNamespace(config=SimpleNamespace(daemon=SimpleNamespace(lang=lang)))
    return SimpleNamespace(region="us-east-1", alerts_enabled=alerts, daemon=daemon,
                           suspicion_bounds=lambda: (1.0, 6.0))


@pytest.mark.parametrize("previous, new, expect", [
    (ALIVE, DEAD, "firing"),
    (SUSPECT, DEAD, "firing"),
    (None, DEAD, "firing"),       # first seen dead (after join_timeout, or from a peer's table)
    (DEAD, ALIVE, "resolved"),
    (DEAD, LEFT, "resolved"),     # dead, then it said goodbye: no longer an outage
    (ALIVE, LEFT, None),          # a graceful leave is not an alert
    (ALIVE, SUSPECT, None),
    (SUSPECT, ALIVE, None),
])
def test_region_down_is_raised_on_death_and_resolved_on_return(previous, new, expect) -> None:
    from meshd.members import Member
    from meshd_plugins.membership.alerts import region_alert

    prev = Member("eu-west-1", previous, 3) if previous else None
    alert = region_alert(_observer(), Member("eu-west-1", new, 4), prev)
    if expect is None:
        assert alert is None
        return
    assert alert.status == expect
    assert alert.labels == {"alertname": "RegionDown", "severity": "critical", "region": "eu-west-1"}
    assert "eu-west-1" in alert.annotations["summary"] and alert.annotations["description"]


def test_region_down_speaks_the_daemon_language_and_can_be_turned_off() -> None:
    from meshd.members import Member
    from meshd_plugins.membership.alerts import region_alert

    fr = region_alert(_observer("fr"), Member("eu-west-1", DEAD, 1), Member("eu-west-1", SUSPECT, 1))
    assert fr.annotations["summary"] == "La région eu-west-1 est hors service"
    assert region_alert(_observer(alerts=False), Member("eu-west-1", DEAD, 1), None) is None
    assert region_alert(_observer(), Member("us-east-1", DEAD, 1), None) is None  # never about itself
