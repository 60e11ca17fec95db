"""Ask the NATS server itself what this region's credentials may do: publish and watch for its refusal.

A second connection with the daemon's own credentials (so the daemon's
error callback and counters see nothing) subscribes to each probe subject
and publishes there once. Either the server answers ``-ERR 'Permissions
Violation for Publish to <subject>'`` (refused) or the message comes back
through the subscription (accepted). A flush is no barrier: the server may
send the refusal after the flush's PONG. Only when neither arrives (the user
may not subscribe there either) does the probe give up after ``timeout``,
and that counts as not refused.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from meshd.transport import nats_connect_options

if TYPE_CHECKING:
    from meshd.daemon import Daemon

PROBE_BODY = b'{"audit":"permission probe: a daemon drops this as not an envelope"}'


async def refused_publishes(daemon: Daemon, subjects: Sequence[str], timeout: float = 2.0) -> dict[str, bool]:
    """For each subject, whether the server refused this region's publish there."""
    import asyncio

    import nats

    refused: dict[str, bool] = {}
    answered = {s: asyncio.Event() for s in subjects}

    async def on_error(exc: Exception) -> None:
        text = str(exc).lower()
        for subject in subjects:
            if "permissions violation for publish" in text and f'"{subject.lower()}"' in text:
                refused[subject] = True
                answered[subject].set()

    def on_message(subject: str) -> Any:
        async def cb(_msg: Any) -> None:
            refused.setdefault(subject, False)
            answered[subject].set()
        return cb

    opts: dict[str, Any] = nats_connect_options(daemon.config.daemon.nats, daemon.secret)
    opts.update(error_cb=on_error, allow_reconnect=False, max_reconnect_attempts=0,
                name=f"meshd-{daemon.federation}-{daemon.region}-audit", connect_timeout=timeout)
    nc = await nats.connect(**opts)
    try:
        for subject in subjects:
            await nc.subscribe(subject, cb=on_message(subject))
            await nc.publish(subject, PROBE_BODY)
        await nc.flush(timeout=math.ceil(timeout))  # nats-py types the timeout as int
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                for event in answered.values():
                    await event.wait()
    finally:
        await nc.close()
    return {s: refused.get(s, False) for s in subjects}
