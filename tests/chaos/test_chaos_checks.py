"""The chaos checks themselves: each one fails on the history it exists to catch (no processes)."""

from __future__ import annotations

from pathlib import Path

from chaos_runner import ChaosRun, Event, RouteProbe

from meshd_plugins.failover.records import Record

T0 = 1_000_000.0
TENANTS = {"acme-eu": {"residency": "EU"}, "globex-us": {"residency": "US"}}
JUR = {"us-east-1": "US", "us-west-2": "US", "eu-west-1": "EU", "eu-central-1": "EU", "ca-central-1": "CA",
       "me-south-1": "BH", "ap-southeast-1": "SG"}


def run(tmp_path: Path, *events: Event) -> ChaosRun:
    chaos = ChaosRun(tmp_path, seed=1, detect_budget=10.0)
    chaos.report.events = sorted(events, key=lambda e: e.t)
    return chaos


def committed(region: str, term: int, at: float, by: str = "us-east-1", action: str = "failover",
              target: str | None = None) -> Record:
    return Record("committed", region, term, action, target, by, at, voters=("a", "b", "c", "d"), quorum=4,
                  digest=f"{region}{term}")


def test_a_commit_while_a_minority_was_connected_is_caught(tmp_path: Path) -> None:
    cut = ["eu-west-1", "eu-central-1", "ca-central-1", "me-south-1"]
    chaos = run(tmp_path, *[Event(T0, "down", r, cause="cut") for r in cut],
                *[Event(T0 + 20, "up", r, cause="heal") for r in cut])
    chaos._check_minority(committed("ap-southeast-1", 1, T0 + 10))
    assert any("a minority decided" in v for v in chaos.report.violations)
    fine = run(tmp_path, *[Event(T0, "down", r, cause="cut") for r in cut[:3]])
    fine._check_minority(committed("ap-southeast-1", 1, T0 + 10))
    assert fine.report.violations == []


def test_a_commit_by_a_paused_daemon_is_caught_but_not_one_in_flight_at_the_cut(tmp_path: Path) -> None:
    chaos = run(tmp_path, Event(T0, "down", "us-east-1", cause="pause"))
    chaos._check_minority(committed("ap-southeast-1", 1, T0 + 5, by="us-east-1"))
    assert any("cut off, paused or dead" in v for v in chaos.report.violations)
    in_flight = run(tmp_path, Event(T0, "down", "us-east-1", cause="cut"))
    in_flight._check_minority(committed("ap-southeast-1", 1, T0 + 0.2, by="us-east-1"))
    assert in_flight.report.violations == []


def test_a_node_restart_takes_its_daemons_down(tmp_path: Path) -> None:
    chaos = run(tmp_path, Event(T0, "node_down", node=0), Event(T0 + 3, "node_up", node=0))
    # Regions 0, 3 and 6 of the list are pinned to node 0.
    assert [r for r in chaos.regions if chaos.down_at(r, T0 + 1)] == ["us-east-1", "eu-central-1", "ap-southeast-1"]
    assert chaos.connected_at(T0 + 1) == 4 and chaos.connected_at(T0 + 4) == 7


def test_a_kill_without_a_decision_is_a_liveness_violation(tmp_path: Path) -> None:
    kill = [Event(T0, "down", "eu-west-1", cause="kill"), Event(T0 + 30, "up", "eu-west-1", cause="restart")]
    chaos = run(tmp_path, *kill)
    chaos._check_liveness({})
    assert any(v.startswith("liveness: eu-west-1") for v in chaos.report.violations)
    ok = run(tmp_path, *kill)
    ok._check_liveness({("eu-west-1", 1): committed("eu-west-1", 1, T0 + 2.5, target="eu-central-1")})
    assert ok.report.violations == [] and ok.report.liveness_checked == 1
    # Without a quorum connected, nothing was promised.
    cut = [Event(T0 + 1, "down", r, cause="cut") for r in ("us-east-1", "us-west-2", "ca-central-1")]
    excused = run(tmp_path, *kill, *cut)
    excused._check_liveness({})
    assert excused.report.violations == [] and "no quorum" in excused.report.notes[0]


def test_routes_to_failed_over_dead_or_foreign_regions_are_caught(tmp_path: Path) -> None:
    chaos = run(tmp_path, Event(T0, "down", "us-west-2", cause="kill"))
    records = {("eu-west-1", 1): committed("eu-west-1", 1, T0, target="eu-central-1")}

    def probe(tenant: str, region: str, at: float) -> RouteProbe:
        return RouteProbe(at, "ca-central-1", tenant, "DE", 200, {"ok": True, "region": region})

    chaos.probes = [probe("acme-eu", "eu-west-1", T0 + 5),      # failed over 5 s ago
                    probe("acme-eu", "eu-west-1", T0 + 0.5),    # decision still being applied: allowed
                    probe("globex-us", "us-west-2", T0 + 30),   # dead for 30 s
                    probe("acme-eu", "us-east-1", T0 + 5),      # outside the residency
                    probe("acme-eu", "eu-central-1", T0 + 5)]   # fine
    chaos._check_routes(records, JUR, TENANTS)
    found = chaos.report.violations
    assert len(found) == 3
    assert "failed over since" in found[0] and "dead for 30.0s" in found[1] and "outside its residency" in found[2]


def test_double_votes_and_diverging_records_in_audit_logs_are_caught(tmp_path: Path) -> None:
    chaos = run(tmp_path)
    record = committed("eu-west-1", 1, T0, target="eu-central-1")
    record = Record(**{**record.__dict__, "voters": ("us-east-1",)})
    vote = {"kind": "vote", "data": {"region": "eu-west-1", "term": 1, "vote": "yes"}}
    chaos.audits = {
        "us-east-1": [vote, vote, {"kind": "decision", "data": {"region": "eu-west-1", "term": 1,
                                                                 "digest": "something else"}}],
        "us-west-2": [],
    }
    chaos._check_audits({("eu-west-1", 1): record})
    text = "\n".join(chaos.report.violations)
    assert "us-east-1 voted 2 times on eu-west-1/1" in text
    assert "us-east-1 applied another record for eu-west-1/1" in text
    assert "us-west-2 never applied eu-west-1/1" in text


def test_a_quorum_renewed_before_a_partition_is_caught(tmp_path: Path) -> None:
    voters = ("ca-central-1", "eu-central-1", "me-south-1", "us-east-1")
    chaos = run(tmp_path, *[Event(T0, "down", r, cause="cut") for r in voters[:2]])
    stale = Record("committed", "eu-west-1", 1, "failover", "eu-central-1", "us-east-1", T0 + 1.0,
                   voters=voters, quorum=4, vote_signed_at=(T0 - 5.0, T0 + 0.9, T0 + 0.9, T0 + 0.9))
    chaos._check_minority(stale)
    text = "\n".join(chaos.report.violations)
    assert "last renewed 6.00s before the commit" in text
    assert "only 3 voters were connected when they last renewed" in text  # eu-central-1 was cut
