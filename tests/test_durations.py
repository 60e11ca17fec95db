"""Durations as Prometheus and Alertmanager write them, everywhere meshd reads one."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from meshd.cli import main
from meshd.durations import format_duration, parse_duration
from meshd.testing import write_federation


@pytest.mark.parametrize(("text", "seconds"), [
    ("500ms", 0.5), ("2s", 2.0), ("5m", 300.0), ("1h", 3600.0), ("2d", 172800.0), ("1w", 604800.0),
    ("1y", 365 * 86400.0), ("1h30m", 5400.0), ("1m30s", 90.0), ("1s500ms", 1.5), ("2d12h", 216000.0),
    ("1w2d3h4m5s6ms", 604800 + 172800 + 10800 + 240 + 5.006), (" 1h 30m ", 5400.0), ("1.5s", 1.5),
    ("90", 90.0), ("0s", 0.0), (30, 30.0), (0.25, 0.25),
])
def test_compound_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "why"), [
    ("30m1h", "largest to the smallest"), ("1m1m", "largest to the smallest"), ("1s1m", "largest to the smallest"),
    ("soon", "not a duration"), ("1h30", "not a duration"), ("-5s", "not a duration"), ("", "not a duration"),
    ("h", "not a duration"), ("1x", "not a duration"), (True, "a duration"), (None, "not a duration"),
    (-1, "cannot be negative"),
])
def test_bad_durations_say_why(text: object, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=10 * 365 * 86_400_000))
def test_format_then_parse_round_trips(milliseconds: int) -> None:
    seconds = milliseconds / 1000
    text = format_duration(seconds)
    assert parse_duration(text) == seconds
    assert format_duration(parse_duration(text)) == text


def test_format_is_the_compact_form() -> None:
    assert [format_duration(s) for s in (0, 0.5, 90, 5400, 86400 + 1.25, 8 * 86400)] == \
        ["0s", "500ms", "1m30s", "1h30m", "1d1s250ms", "1w1d"]


def test_a_compound_duration_in_a_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from meshd.config import load_config

    path = write_federation(tmp_path, ["eu-west-1"], "nats://127.0.0.1:4222")["eu-west-1"]
    data = yaml.safe_load(path.read_text())
    data["nats"]["connect_timeout"] = "1m30s"
    data["nats"]["reconnect_wait"] = "1s500ms"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    config = load_config(path)
    assert (config.daemon.nats.connect_timeout, config.daemon.nats.reconnect_wait) == (90.0, 1.5)

    data["nats"]["connect_timeout"] = "30s1m"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert main(["check-config", str(path)]) == 2
    out = capsys.readouterr()
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if "30s1m" in text)
    assert f"{path}:{line}: nats.connect_timeout" in out.out + out.err
    assert "largest to the smallest" in out.out + out.err
