"""One analysis check: Flagger's thresholds, and no data is never good data."""

from __future__ import annotations

from meshd.deploydriver import ServerCounters
from meshd_plugins.deploy import judge
from meshd_plugins.deploy.analysis import judge_probes
from meshd_plugins.deploy.pipeline import Analysis

ANALYSIS = Analysis(min_requests=100)


def counters(requests: int, errors: int = 0, ms: float | None = 20.0) -> ServerCounters:
    return ServerCounters(requests=requests, errors_5xx=errors, response_ms=ms)


def test_a_healthy_interval_passes() -> None:
    check = judge(counters(1000, 3), counters(1200, 4), ANALYSIS)
    assert (check.verdict, check.requests, check.success_rate) == ("pass", 200, 99.5)


def test_errors_above_one_percent_fail() -> None:
    check = judge(counters(0), counters(200, 3), ANALYSIS)
    assert check.verdict == "fail" and check.success_rate == 98.5


def test_exactly_99_percent_passes() -> None:
    assert judge(counters(0), counters(200, 2), ANALYSIS).verdict == "pass"


def test_slow_answers_fail() -> None:
    check = judge(counters(0), counters(200, 0, ms=501), ANALYSIS)
    assert check.verdict == "fail" and "latency 501 ms above 500 ms" in check.reason


def test_too_little_traffic_is_inconclusive_even_when_every_request_failed() -> None:
    check = judge(counters(50), counters(149, 99), ANALYSIS)
    assert check.verdict == "inconclusive" and "99 canary requests" in check.reason


def test_counters_that_went_backwards_are_inconclusive() -> None:
    assert judge(counters(5000, 10), counters(300, 0), ANALYSIS).verdict == "inconclusive"


def test_probe_checks() -> None:
    analysis = Analysis(source="probes", probes=["canary-http", "canary-tcp"])
    assert judge_probes({"canary-http": True}, analysis).verdict == "inconclusive"
    assert judge_probes({"canary-http": True, "canary-tcp": False}, analysis).verdict == "fail"
    assert judge_probes({"canary-http": True, "canary-tcp": True}, analysis).verdict == "pass"
