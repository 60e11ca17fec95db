"""What meshd reads from apprise, checked against the pinned apprise and a real loopback receiver.

apprise reports one boolean per send; meshd learns the HTTP status of a
failure from apprise's log line (``error=503``) to choose between retrying
and giving up. A new apprise that words its lines differently must fail here,
not quietly turn every 4xx into a retry.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
from alerts_receiver import RecordingReceiver
from packaging.requirements import Requirement

from meshd_plugins.alerts.senders import failure_reason, send_apprise
from meshd_plugins.alerts.targets import parse_target

SCHEMES = {
    "json": "json://127.0.0.1:{port}/hook",
    "form": "form://127.0.0.1:{port}/hook",
    "ntfy": "ntfy://127.0.0.1:{port}/meshd",
    "gotify": "gotify://127.0.0.1:{port}/GotifyToken0123",
    "mmost": "mmost://127.0.0.1:{port}/MattermostToken0123",
}
"""apprise services that can be pointed at a loopback receiver, each logging its failures its own way."""

OUTCOMES = [(400, False, "http_4xx"), (401, False, "http_4xx"), (404, False, "http_4xx"),
            (429, True, "http_429"), (500, True, "http_5xx"), (503, True, "http_5xx")]


@pytest.fixture(scope="module")
def rx() -> Iterator[RecordingReceiver]:
    with RecordingReceiver() as receiver:
        yield receiver


def test_the_installed_apprise_is_the_pinned_range() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    [pin] = [Requirement(d) for d in pyproject["project"]["dependencies"] if d.startswith("apprise")]
    assert pin.specifier and any(s.operator == "<" for s in pin.specifier), "apprise needs an upper bound"
    assert pin.specifier.contains(version("apprise")), f"apprise {version('apprise')} is outside {pin}"


@pytest.mark.parametrize("status,retryable,reason", OUTCOMES, ids=[str(o[0]) for o in OUTCOMES])
@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_the_status_of_a_failed_send_is_read_from_apprise(rx: RecordingReceiver, scheme: str, status: int,
                                                          retryable: bool, reason: str) -> None:
    rx.heal()
    rx.fail(status, count=1)
    before = len(rx.attempts)
    result = send_apprise(parse_target(SCHEMES[scheme].format(port=rx.port)), "title", "body", "failure",
                          timeout=3.0)
    assert [a.status for a in rx.attempts[before:]] == [status]  # one request: apprise did not retry
    assert not result.ok
    assert result.detail.startswith(f"http_{status}"), result.detail
    assert result.retryable is retryable
    assert failure_reason(result) == reason


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_an_accepted_send_and_a_refused_connection(rx: RecordingReceiver, scheme: str) -> None:
    rx.heal()
    ok = send_apprise(parse_target(SCHEMES[scheme].format(port=rx.port)), "title", "body", "info", timeout=3.0)
    assert ok.ok and rx.attempts[-1].status == 202

    with RecordingReceiver() as closed:
        port = closed.port
    refused = send_apprise(parse_target(SCHEMES[scheme].format(port=port)), "title", "body", "info", timeout=3.0)
    assert not refused.ok and refused.retryable
    assert failure_reason(refused) == "connection", refused.detail
