"""One analysis check: Flagger's thresholds, and no data is never good data."""

from __future__ import annotations

import pytest

from meshd.deploydriver import ServerCounters
from meshd.prometheus import QueryError, parse_answer
from meshd_plugins.deploy import judge
from meshd_plugins.deploy.analysis import judge_probes, judge_readings, p99
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
    analysis = Analysis(source="probes", probes=["canary-http", "canary-tcp"], min_samples=4)
    samples = [12.0, 15.0, 11.0, 14.0]
    assert judge_probes({"canary-http": True}, analysis, samples, 2).verdict == "inconclusive"
    assert judge_probes({"canary-http": True, "canary-tcp": False}, analysis, samples, 2, 1).verdict == "fail"
    assert judge_probes({"canary-http": True, "canary-tcp": True}, analysis, samples, 2).verdict == "pass"


def test_probe_p99_is_a_measured_sample_and_needs_enough_of_them() -> None:
    analysis = Analysis(source="probes", probes=["canary-http"], min_samples=100)
    ok = {"canary-http": True}
    fast_with_a_slow_tail = [10.0] * 98 + [900.0] * 2  # mean 27.8 ms, p99 900 ms
    check = judge_probes(ok, analysis, fast_with_a_slow_tail, rounds=100)
    assert check.verdict == "fail" and check.latency_ms == 900.0 and "probe p99 900 ms above 500 ms" in check.reason
    assert p99([10.0] * 99 + [900.0]) == 10.0  # one sample in 100 is the 1 % above the 99th percentile
    assert judge_probes(ok, analysis, [10.0] * 99, rounds=99).verdict == "inconclusive"
    assert judge_probes(ok, analysis, [10.0] * 100, rounds=100).verdict == "pass"
    assert judge_probes(ok, analysis, [10.0] * 100, rounds=100, failed_rounds=2).verdict == "fail"


def test_prometheus_readings_without_data_never_pass() -> None:
    analysis = Analysis()
    assert judge_readings(None, 20.0, analysis).verdict == "inconclusive"
    assert "no data for success_rate and latency_ms" in judge_readings(None, None, analysis).reason
    assert judge_readings(99.5, 499.0, analysis).verdict == "pass"
    assert judge_readings(99.5, 501.0, analysis).verdict == "fail"
    assert judge_readings(98.0, 10.0, analysis).verdict == "fail"


@pytest.mark.parametrize(("body", "error"), [
    (b'{"status":"error","errorType":"bad_data","error":"parse error"}', "bad_data: parse error"),
    (b'{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"1"]},{"value":[1,"2"]}]}}',
     "returned 2 series"),
    (b'{"status":"success","data":{"resultType":"matrix","result":[]}}', "returned a matrix"),
    (b"<html>", "not JSON"),
])
def test_a_prometheus_answer_that_is_not_one_number_is_a_query_error(body: bytes, error: str) -> None:
    with pytest.raises(QueryError, match=error):
        parse_answer(body)


def test_no_data_from_prometheus_is_none() -> None:
    assert parse_answer(b'{"status":"success","data":{"resultType":"vector","result":[]}}') is None
    assert parse_answer(b'{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"NaN"]}]}}') is None
    assert parse_answer(b'{"status":"success","data":{"resultType":"scalar","result":[1,"99.5"]}}') == 99.5
