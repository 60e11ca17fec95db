"""A plugin that breaks the vote hook's contract cannot stop a failover (in-memory transport)."""

from __future__ import annotations

from typing import Any

import pytest

from meshd import hookimpl

pytestmark = pytest.mark.anyio

REGIONS = ["us-east-1", "eu-west-1", "eu-central-1"]
FAST = {"failover": {"vote_timeout": "1s", "hold_down": "0.3s", "flap_window": "1h"}}


class SaysTrue:
    """A vote hook written as a yes/no predicate: ``True`` where a ``Veto`` or None is expected."""

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def meshd_failover_vote(self, proposal: Any) -> Any:
        self.calls += 1
        return True


async def test_a_vote_hook_returning_true_is_logged_counted_and_the_failover_proceeds(
        make_federation: Any, caplog: pytest.LogCaptureFixture) -> None:
    async with make_federation(regions=REGIONS, patch=FAST, extra_plugins=[("says-true", SaysTrue)]) as fed:
        await fed.start_all()
        await fed.see("eu-west-1", "dead")
        for region in ["us-east-1", "eu-central-1"]:
            await fed.until(lambda r=region: fed.decided(r, "eu-west-1"), what=f"{region} applied the failover")
        [decision] = fed.decisions("us-east-1")
        assert decision["action"] == "failover" and decision["target"] == "eu-central-1"
        assert sorted(decision["voters"]) == ["eu-central-1", "us-east-1"]  # True vetoed nothing
        for voter in decision["voters"]:
            daemon = fed.daemons[voter]
            assert fed.plugin(voter, "says-true").calls >= 1
            assert daemon.metrics.value("plugin_errors_total", plugin="says-true", hook="meshd_failover_vote") >= 1
            assert daemon.metrics.value("service_restarts_total", service="failover") == 0
        assert ("plugin says-true returned True from meshd_failover_vote, which expects "
                "Veto | Awaitable[Veto | None] | None; ignored") in caplog.text
