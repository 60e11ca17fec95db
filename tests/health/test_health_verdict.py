"""Verdict rules: how warning and critical probes map to degraded and down, and the reasons given."""

from __future__ import annotations

import pytest

from meshd import HealthStatus
from meshd_plugins.health.hysteresis import ProbeState
from meshd_plugins.health.verdict import ImpactRules, ProbeView, VerdictRules, region_verdict

DEFAULT = VerdictRules()


def v(name: str, severity: str, state: str) -> ProbeView:
    return ProbeView(name, severity, ProbeState(state))


@pytest.mark.parametrize(("severity", "state", "expected"), [
    ("critical", "critical", HealthStatus.DOWN),
    ("critical", "warning", HealthStatus.DEGRADED),
    ("warning", "critical", HealthStatus.DEGRADED),
    ("warning", "warning", HealthStatus.DEGRADED),
    ("critical", "ok", HealthStatus.HEALTHY),
    ("critical", "pending", HealthStatus.HEALTHY),
])
def test_default_rules(severity: str, state: str, expected: HealthStatus) -> None:
    status, reasons = region_verdict([v("p", severity, state)], DEFAULT)
    assert status is expected
    assert reasons == (() if expected is HealthStatus.HEALTHY else ("p",))


def test_no_probes_is_healthy() -> None:
    assert region_verdict([], DEFAULT) == (HealthStatus.HEALTHY, ())


def test_the_worst_probe_wins_and_reasons_list_the_worst_first() -> None:
    probes = [v("zeta", "warning", "critical"), v("api", "warning", "warning"), v("db", "critical", "critical"),
              v("fine", "critical", "ok")]
    status, reasons = region_verdict(probes, DEFAULT)
    assert status is HealthStatus.DOWN
    assert reasons == ("db", "api", "zeta")  # the down-causing one first, then by name


def test_rules_are_configurable() -> None:
    strict = VerdictRules(warning_probes=ImpactRules(warning="degraded", critical="down"))
    assert region_verdict([v("p", "warning", "critical")], strict)[0] is HealthStatus.DOWN
    lenient = VerdictRules(critical_probes=ImpactRules(warning="healthy", critical="degraded"))
    assert region_verdict([v("p", "critical", "warning")], lenient) == (HealthStatus.HEALTHY, ())
    assert region_verdict([v("p", "critical", "critical")], lenient)[0] is HealthStatus.DEGRADED


def test_a_probe_mapped_to_healthy_is_not_a_reason() -> None:
    informational = VerdictRules(warning_probes=ImpactRules(warning="healthy", critical="healthy"))
    status, reasons = region_verdict([v("info", "warning", "critical"), v("db", "critical", "warning")],
                                     informational)
    assert (status, reasons) == (HealthStatus.DEGRADED, ("db",))
