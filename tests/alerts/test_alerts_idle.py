"""An idle daemon's outbox housekeeping: no query while the outbox is known empty, back as soon as a row is."""

from __future__ import annotations

from typing import Any

import pytest
from alerts_receiver import RecordingReceiver, drained, raise_everywhere, runtime, wait_received

from meshd.testing import until

pytestmark = [pytest.mark.anyio, pytest.mark.nats]


def routes(url: str) -> dict[str, Any]:
    return {"route": {"receiver": "nowhere", "group_by": ["alertname", "region"], "group_wait": "0s",
                      "group_interval": "500ms", "repeat_interval": "1h",
                      "routes": [{"matchers": ['team="ops"'], "receiver": "chat"}]},
            "receivers": [{"name": "nowhere"}, {"name": "chat", "urls": [url]}]}


class Rounds:
    """Each housekeeping round of a daemon's delivery service, and whether it queried the outbox."""

    def __init__(self, daemon: Any):
        rt = runtime(daemon)
        self.queried: list[bool] = []
        self._inside = False
        self._queries = 0
        stats, housekeeping = rt.outbox.sync.stats, rt.delivery._housekeeping

        def counted_stats() -> Any:
            self._queries += self._inside  # the real query; only housekeeping's own are counted
            return stats()

        async def counted_round() -> None:
            before, self._inside = self._queries, True
            try:
                await housekeeping()
            finally:
                self._inside = False
                self.queried.append(self._queries > before)

        rt.outbox.sync.stats = counted_stats
        rt.delivery._housekeeping = counted_round

    def quiet_twice(self) -> bool:
        return self.queried[-2:] == [False, False]


async def test_an_empty_outbox_is_not_queried_until_a_row_is_added(alerts_federation: Any, start_daemons: Any,
                                                                  receiver: RecordingReceiver) -> None:
    configs = alerts_federation(["eu-west-1"], routes(receiver.json_url("/chat")))
    async with start_daemons(configs) as daemons:
        [daemon] = daemons.values()
        rounds = Rounds(daemon)
        await until(lambda: len(rounds.queried) >= 4, what="four housekeeping rounds")
        assert not any(rounds.queried[1:4])  # found empty (at the latest in the first round), then left alone

        seen = len(rounds.queried)
        await raise_everywhere(daemons, {"alertname": "RegionDown", "severity": "critical", "region": "x",
                                         "team": "ops"})
        await wait_received(receiver, lambda got: got[:1], what="the notification")
        await drained(daemons)
        # The new row made housekeeping look again, and once it found the outbox empty it stopped again.
        await until(lambda: any(rounds.queried[seen:]) and rounds.quiet_twice(), what="housekeeping quiet again")
        assert len(receiver.received) == 1
