"""Ask the NATS server itself what this region's credentials may do: publish and watch for its refusal.

A second connection with the daemon's own credentials (so the daemon's
error callback and counters see nothing), one publish per subject, then a
flush: the server answers a forbidden publish with ``-ERR 'Permissions
Violation for Publish to <subject>'`` before the flush's PONG, so once the
flush returns every refusal has arrived.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from meshd.transport import nats_connect_options

if TYPE_CHECKING:
    from meshd.daemon import Daemon

PROBE_BODY = b'{"audit":"permission probe: a daemon drops this as not an envelope"}'


async def refused_publishes(daemon: Daemon, subjects: Sequence[str], timeout: float = 3.0) -> dict[str, bool]:
    """For each subject, whether the server refused this region's publish there."""
    import nats

    refusals: list[str] = []

    async def on_error(exc: Exception) -> None:
        refusals.append(str(exc).lower())

    opts: dict[str, Any] = nats_connect_options(daemon.config.daemon.nats, daemon.secret)
    opts.update(error_cb=on_error, allow_reconnect=False, max_reconnect_attempts=0,
                name=f"meshd-{daemon.federation}-{daemon.region}-audit", connect_timeout=timeout)
    for key in ("disconnected_cb", "reconnected_cb", "closed_cb"):
        opts.pop(key, None)
    nc = await nats.connect(**opts)
    try:
        for subject in subjects:
            await nc.publish(subject, PROBE_BODY)
        # Twice: nats-py writes a flush's PING to the socket straight away but the PUBs
        # from its pending buffer only after, so the first PONG can come back before
        # the server has seen (and refused) them. The second PING follows the PUBs.
        await nc.flush(timeout=timeout)
        await nc.flush(timeout=timeout)
    finally:
        await nc.close()
    return {s: any("permissions violation" in r and s.lower() in r for r in refusals) for s in subjects}
